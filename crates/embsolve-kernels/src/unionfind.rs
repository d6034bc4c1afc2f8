//! Union-find whose roots are the smallest element of each set (so a root is a component label
//! that does not depend on the order of the unions), with path halving.

/// Disjoint sets over `0..n`. The root of every set is its smallest element.
#[derive(Debug, Clone)]
pub struct UnionFind {
    parent: Vec<u32>,
}

impl UnionFind {
    pub fn new(n: usize) -> Self {
        assert!(
            n <= u32::MAX as usize,
            "union-find over at most 2^32 - 1 elements"
        );
        UnionFind {
            parent: (0..n as u32).collect(),
        }
    }

    pub fn len(&self) -> usize {
        self.parent.len()
    }

    pub fn is_empty(&self) -> bool {
        self.parent.is_empty()
    }

    /// The smallest element of the set holding `x`.
    pub fn find(&mut self, mut x: u32) -> u32 {
        while self.parent[x as usize] != x {
            let grandparent = self.parent[self.parent[x as usize] as usize];
            self.parent[x as usize] = grandparent;
            x = grandparent;
        }
        x
    }

    /// Join the sets of `a` and `b`; true when they were different sets.
    pub fn union(&mut self, a: u32, b: u32) -> bool {
        let root_a = self.find(a);
        let root_b = self.find(b);
        if root_a == root_b {
            return false;
        }
        // Linking the larger root under the smaller keeps the minimum as the root; path
        // halving keeps the trees shallow.
        let (low, high) = if root_a < root_b {
            (root_a, root_b)
        } else {
            (root_b, root_a)
        };
        self.parent[high as usize] = low;
        true
    }

    /// The root of every element.
    pub fn roots(&mut self) -> Vec<u32> {
        (0..self.parent.len() as u32)
            .map(|x| self.find(x))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reference;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    #[test]
    fn roots_are_component_minima_like_bfs() {
        let mut rng = ChaCha8Rng::seed_from_u64(11);
        for n in [1usize, 2, 10, 1000] {
            for n_edges in [0, n / 3, n, 2 * n] {
                let edges: Vec<(usize, usize)> = (0..n_edges)
                    .map(|_| (rng.gen_range(0..n), rng.gen_range(0..n)))
                    .collect();
                let mut sets = UnionFind::new(n);
                for &(a, b) in &edges {
                    sets.union(a as u32, b as u32);
                }
                let roots: Vec<u64> = sets.roots().iter().map(|&r| r as u64).collect();
                assert_eq!(
                    roots,
                    reference::components_bfs(n, &edges),
                    "n={n} edges={n_edges}"
                );
            }
        }
    }

    #[test]
    fn long_chain_in_reverse_order() {
        let n = 100_000u32;
        let mut sets = UnionFind::new(n as usize);
        for i in (1..n).rev() {
            assert!(sets.union(i, i - 1));
        }
        assert!(!sets.union(0, n - 1));
        assert!(sets.roots().iter().all(|&r| r == 0));
    }
}
