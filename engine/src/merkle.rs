//! Merkle trees over decision batches and lineage, RFC 9162 (Certificate
//! Transparency v2) style.
//!
//! - leaf hash: `SHA-256(0x00 ‖ leaf bytes)`; interior node:
//!   `SHA-256(0x01 ‖ left ‖ right)`. The prefixes keep a leaf from ever
//!   being mistaken for a node (second-preimage resistance).
//! - a tree of `n` leaves splits at the largest power of two below `n`
//!   (RFC 9162 §2.1.1), so any size is allowed and proofs are at most
//!   ⌈log₂ n⌉ hashes.
//! - an inclusion proof lists sibling hashes from the leaf up; it is
//!   verified with RFC 9162 §2.1.3.2, which pins the leaf index: a proof
//!   for index 3 does not verify as index 2. The tree size is pinned by the
//!   signature over (root, size), not by the proof alone: a proof in a tree
//!   of 3 can also verify against the same root claimed as a tree of 4.

use sha2::{Digest, Sha256};

/// A SHA-256 hash.
pub type Hash = [u8; 32];

/// Hash of a leaf's bytes.
pub fn leaf_hash(data: &[u8]) -> Hash {
    Sha256::new()
        .chain_update([0u8])
        .chain_update(data)
        .finalize()
        .into()
}

/// Hash of an interior node.
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    Sha256::new()
        .chain_update([1u8])
        .chain_update(left)
        .chain_update(right)
        .finalize()
        .into()
}

/// The root of the tree over `leaves` (leaf hashes). The empty tree's root
/// is SHA-256 of the empty string, as in RFC 9162.
pub fn root(leaves: &[Hash]) -> Hash {
    match leaves {
        [] => Sha256::digest([]).into(),
        [one] => *one,
        _ => {
            let k = split(leaves.len());
            let (l, r) = leaves.split_at(k);
            node_hash(&root(l), &root(r))
        }
    }
}

/// Largest power of two strictly below `n` (n ≥ 2).
fn split(n: usize) -> usize {
    let mut k = 1;
    while k * 2 < n {
        k *= 2;
    }
    k
}

/// The inclusion proof of leaf `index` in the tree over `leaves`; `None`
/// if `index` is out of range.
pub fn inclusion_proof(leaves: &[Hash], index: usize) -> Option<Vec<Hash>> {
    if index >= leaves.len() {
        return None;
    }
    let mut proof = Vec::new();
    path(leaves, index, &mut proof);
    Some(proof)
}

fn path(leaves: &[Hash], index: usize, out: &mut Vec<Hash>) {
    if leaves.len() <= 1 {
        return;
    }
    let k = split(leaves.len());
    let (l, r) = leaves.split_at(k);
    if index < k {
        path(l, index, out);
        out.push(root(r));
    } else {
        path(r, index - k, out);
        out.push(root(l));
    }
}

/// All inclusion proofs of a tree at once, `O(n log n)` hashing in total
/// (the per-leaf [`inclusion_proof`] would recompute subtree roots).
pub fn all_proofs(leaves: &[Hash]) -> (Hash, Vec<Vec<Hash>>) {
    // A proof holds at most ⌈log2 n⌉ hashes: allocated once, never grown.
    let depth = leaves.len().next_power_of_two().trailing_zeros() as usize;
    let mut proofs: Vec<Vec<Hash>> = (0..leaves.len())
        .map(|_| Vec::with_capacity(depth))
        .collect();
    let r = build(leaves, &mut proofs);
    (r, proofs)
}

fn build(leaves: &[Hash], proofs: &mut [Vec<Hash>]) -> Hash {
    match leaves {
        [] => Sha256::digest([]).into(),
        [one] => *one,
        _ => {
            let k = split(leaves.len());
            let (l, r) = leaves.split_at(k);
            let (pl, pr) = proofs.split_at_mut(k);
            let lh = build(l, pl);
            let rh = build(r, pr);
            for p in pl.iter_mut() {
                p.push(rh);
            }
            for p in pr.iter_mut() {
                p.push(lh);
            }
            node_hash(&lh, &rh)
        }
    }
}

/// Verifies that `leaf` is at `index` of a tree of `size` leaves with
/// root `root` (RFC 9162 §2.1.3.2).
pub fn verify_inclusion(
    leaf: &Hash,
    index: u64,
    size: u64,
    proof: &[Hash],
    expected_root: &Hash,
) -> bool {
    if index >= size {
        return false;
    }
    let (mut fn_, mut sn) = (index, size - 1);
    let mut r = *leaf;
    for p in proof {
        if sn == 0 {
            return false;
        }
        if fn_ & 1 == 1 || fn_ == sn {
            r = node_hash(p, &r);
            if fn_ & 1 == 0 {
                while fn_ & 1 == 0 && fn_ != 0 {
                    fn_ >>= 1;
                    sn >>= 1;
                }
            }
        } else {
            r = node_hash(&r, p);
        }
        fn_ >>= 1;
        sn >>= 1;
    }
    sn == 0 && &r == expected_root
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leaves(n: usize) -> Vec<Hash> {
        (0..n)
            .map(|i| leaf_hash(&(i as u64).to_le_bytes()))
            .collect()
    }

    #[test]
    fn every_proof_verifies_and_only_where_it_belongs() {
        for n in 1..=33 {
            let ls = leaves(n);
            let r = root(&ls);
            let (r2, proofs) = all_proofs(&ls);
            assert_eq!(r, r2, "n = {n}");
            for (i, leaf) in ls.iter().enumerate() {
                let p = inclusion_proof(&ls, i).unwrap();
                assert_eq!(p, proofs[i], "n = {n}, i = {i}");
                assert!(
                    verify_inclusion(leaf, i as u64, n as u64, &p, &r),
                    "n = {n}, i = {i}"
                );
                // Wrong index, wrong size, wrong leaf, truncated or extended proof.
                if n > 1 {
                    let j = (i + 1) % n;
                    assert!(
                        !verify_inclusion(leaf, j as u64, n as u64, &p, &r),
                        "n = {n}, i = {i} as {j}"
                    );
                    assert!(!verify_inclusion(&ls[j], i as u64, n as u64, &p, &r));
                    assert!(!verify_inclusion(
                        leaf,
                        i as u64,
                        n as u64,
                        &p[..p.len() - 1],
                        &r
                    ));
                }
                let mut longer = p.clone();
                longer.push([0; 32]);
                assert!(!verify_inclusion(leaf, i as u64, n as u64, &longer, &r));
            }
        }
    }

    #[test]
    fn leaves_and_nodes_never_collide() {
        let a = leaf_hash(b"x");
        let b = leaf_hash(b"y");
        let mut joined = a.to_vec();
        joined.extend_from_slice(&b);
        assert_ne!(node_hash(&a, &b), leaf_hash(&joined));
    }

    #[test]
    fn known_root_of_two() {
        let ls = leaves(2);
        assert_eq!(root(&ls), node_hash(&ls[0], &ls[1]));
        assert_eq!(root(&[]), <[u8; 32]>::from(Sha256::digest([])));
    }
}
