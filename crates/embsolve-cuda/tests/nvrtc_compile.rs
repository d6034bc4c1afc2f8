//! Every NVRTC kernel source compiles, as CUBIN for the GPU architectures the project targets and
//! as PTX, whenever libnvrtc can be loaded (no GPU needed: `scripts/nvrtc_lib.sh` provides it).
//! Without NVRTC the test prints why it skipped.

mod common;

use common::skip;
use embsolve_cuda::kernels::{compile, Target, SOURCES};
use embsolve_cuda::probe::nvrtc_present;

#[test]
fn every_kernel_source_compiles_with_nvrtc() {
    if !nvrtc_present() {
        skip(
            "every_kernel_source_compiles_with_nvrtc",
            "libnvrtc.so not found (LD_LIBRARY_PATH=$(scripts/nvrtc_lib.sh) provides it)",
        );
        return;
    }
    // Ampere (A100), Ada (L40) and Hopper (H100/H200).
    let architectures = [(8, 0), (8, 9), (9, 0)];
    for (name, source, entry_points) in SOURCES {
        for &(major, minor) in &architectures {
            let cubin = compile(name, source, Target::Cubin { major, minor })
                .unwrap_or_else(|e| panic!("{name} as CUBIN sm_{major}{minor}: {e}"));
            let described = format!("{cubin:?}");
            assert!(
                described.starts_with("Ptx(Binary(") && described.len() > 1000,
                "{name}: no CUBIN for sm_{major}{minor}"
            );
            let ptx = compile(name, source, Target::Ptx { major, minor })
                .unwrap_or_else(|e| panic!("{name} as PTX compute_{major}{minor}: {e}"));
            let text = ptx.to_src();
            for entry in *entry_points {
                assert!(
                    text.contains(&format!(".entry {entry}")),
                    "{name}: PTX for compute_{major}{minor} lacks entry point {entry}"
                );
            }
        }
    }
}

#[test]
fn a_broken_source_is_an_error_with_the_compiler_log() {
    if !nvrtc_present() {
        skip(
            "a_broken_source_is_an_error_with_the_compiler_log",
            "libnvrtc.so not found",
        );
        return;
    }
    let error = compile(
        "broken.cu",
        "extern \"C\" __global__ void broken() { undeclared_name = 1; }",
        Target::Cubin { major: 9, minor: 0 },
    )
    .unwrap_err();
    assert!(error.message.contains("broken.cu"), "{error}");
    assert!(error.message.contains("undeclared_name"), "{error}");
}
