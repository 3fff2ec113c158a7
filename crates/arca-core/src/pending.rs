//! Pending-deletion marks, the first phase of prune (docs/format.md §"Concurrency and prune").
//!
//! `pending/NAME` = `"ARCAPEND" version:u8 count:u32le (kind:u8 pack_id:[32])*`, plaintext (it
//! holds only opaque pack ids, and the server may run prune too), named by its BLAKE3.

use std::collections::HashSet;

use arca_store::ObjectKind;

use crate::error::{Error, Result};
use crate::id::{content_hash, PackId};
use crate::pack::PackKind;
use crate::repository::DynStore;

const MAGIC: &[u8; 8] = b"ARCAPEND";

/// Encodes a mark.
pub fn encode(packs: &[(PackKind, PackId)]) -> Vec<u8> {
    let mut out = Vec::with_capacity(13 + packs.len() * 33);
    out.extend_from_slice(MAGIC);
    out.push(1);
    out.extend_from_slice(&(packs.len() as u32).to_le_bytes());
    for (k, id) in packs {
        out.push(k.byte());
        out.extend_from_slice(id.as_bytes());
    }
    out
}

/// Decodes a mark.
pub fn decode(bytes: &[u8]) -> Result<Vec<(PackKind, PackId)>> {
    if bytes.len() < 13 || &bytes[..8] != MAGIC || bytes[8] != 1 {
        return Err(Error::corrupt("not a pending-deletion mark"));
    }
    let count = u32::from_le_bytes(bytes[9..13].try_into().expect("4 bytes")) as usize;
    if bytes.len() != 13 + count.saturating_mul(33) {
        return Err(Error::corrupt("pending-deletion mark has the wrong length"));
    }
    bytes[13..]
        .chunks_exact(33)
        .map(|r| {
            let kind =
                PackKind::from_byte(r[0]).ok_or_else(|| Error::corrupt("pending mark names an unknown pack kind"))?;
            Ok((kind, PackId(r[1..].try_into().expect("32 bytes"))))
        })
        .collect()
}

/// Stores a mark; returns its name.
pub fn write(store: &DynStore, packs: &[(PackKind, PackId)]) -> Result<String> {
    let bytes = encode(packs);
    let name = hex::encode(content_hash(&bytes));
    store.put(ObjectKind::Pending, &name, &bytes)?;
    Ok(name)
}

/// Every pack marked by any pending object. An unreadable mark is an error: guessing could let a
/// backup deduplicate against a pack that is about to vanish.
pub fn marked_packs(store: &DynStore) -> Result<HashSet<PackId>> {
    let mut out = HashSet::new();
    for info in store.list(ObjectKind::Pending)? {
        let bytes = match store.get(ObjectKind::Pending, &info.name) {
            Ok(b) => b,
            Err(e) if e.is_not_found() => continue, // removed by a finishing prune meanwhile
            Err(e) => return Err(e.into()),
        };
        out.extend(
            decode(&bytes)
                .map_err(|e| e.context(format!("pending object {}", info.name)))?
                .into_iter()
                .map(|(_, id)| id),
        );
    }
    Ok(out)
}
