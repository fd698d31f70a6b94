//! The gossip mesh: each node keeps about `degree` mesh peers (gossipsub's D = 6); a message
//! reaches a node after as many hops as the shortest mesh path.

use std::collections::VecDeque;

use crate::rng::Rng;

/// Hop counts between every pair of nodes over a random mesh.
#[derive(Clone, Debug)]
pub struct Mesh {
    n: usize,
    hops: Vec<u8>,
}

impl Mesh {
    /// A connected random mesh of `n` nodes where every node links to `degree` random others
    /// (links are symmetric, so most nodes end up with about twice that many).
    pub fn random(n: usize, degree: usize, rng: &mut Rng) -> Self {
        let mut adj: Vec<Vec<u32>> = vec![Vec::new(); n];
        let link = |adj: &mut Vec<Vec<u32>>, a: usize, b: usize| {
            if a != b && !adj[a].contains(&(b as u32)) {
                adj[a].push(b as u32);
                adj[b].push(a as u32);
            }
        };
        // A ring keeps it connected whatever the draws; random links make paths short.
        for i in 0..n {
            link(&mut adj, i, (i + 1) % n.max(1));
        }
        for i in 0..n {
            for _ in 0..degree.saturating_sub(1) {
                let j = rng.below(n as u64) as usize;
                link(&mut adj, i, j);
            }
        }
        let mut hops = vec![u8::MAX; n * n];
        let mut queue = VecDeque::new();
        for src in 0..n {
            let row = &mut hops[src * n..(src + 1) * n];
            row[src] = 0;
            queue.clear();
            queue.push_back(src);
            while let Some(u) = queue.pop_front() {
                let d = row[u];
                for &v in &adj[u] {
                    let v = v as usize;
                    if row[v] == u8::MAX {
                        row[v] = d.saturating_add(1);
                        queue.push_back(v);
                    }
                }
            }
        }
        Self { n, hops }
    }

    /// Mesh hops from `a` to `b`.
    pub fn hops(&self, a: usize, b: usize) -> u8 {
        self.hops[a * self.n + b]
    }

    /// The longest shortest path.
    pub fn diameter(&self) -> u8 {
        self.hops.iter().copied().max().unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connected_and_short() {
        let mut rng = Rng::new(5);
        let mesh = Mesh::random(1000, 6, &mut rng);
        assert!(mesh.diameter() < 10, "{}", mesh.diameter());
        assert_eq!(mesh.hops(3, 3), 0);
        assert_eq!(mesh.hops(3, 700), mesh.hops(700, 3));
        let small = Mesh::random(2, 6, &mut rng);
        assert_eq!(small.hops(0, 1), 1);
    }
}
