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

/// What a writer (backup, image backup, copy) must not deduplicate against, from the pending
/// objects it read at the start (docs/format.md §"Concurrency and prune", Backup step 2).
#[derive(Debug, Default)]
pub struct Marks {
    /// Packs named by readable marks.
    pub packs: HashSet<PackId>,
    /// Avoid every pack: a mark that might be a live prune's could not be read (see
    /// [`marked_packs`]). The writer then stores every blob again.
    pub everything: bool,
    /// One line per unreadable pending object: its name, why, and what to do (the caller logs or
    /// reports them).
    pub warnings: Vec<String>,
}

impl Marks {
    /// Whether a writer must not deduplicate against `pack`.
    pub fn contains(&self, pack: &PackId) -> bool {
        self.everything || self.packs.contains(pack)
    }
}

/// Reads every pending object, for a writer that has already stored its lock.
///
/// An unreadable pending object (garbage, damaged, or from a newer arca) no longer stops the
/// backup: a writer with `put` access could otherwise stop every backup with 100 bytes. Why
/// skipping it is safe:
///
/// - Prune never deletes a pack because a stored mark names it: it deletes only packs of the mark
///   it holds in memory (and re-checks them), and it clears every stored mark when it starts. A
///   mark only tells *backups* which packs a live prune may delete.
/// - So only a mark of a prune that is still running matters. If no readable, non-stale prune
///   lock exists once the marks are read, no prune can act on the unreadable object: a prune that
///   finished has deleted its packs before its lock (the writer lists packs after this, so it
///   does not see them), a dead one deletes nothing, and a prune that starts later clears the
///   object and waits for this writer's lock. The object is skipped with a warning.
/// - If such a lock exists (or a lock cannot be read), the unreadable object could be that
///   prune's mark (damaged in storage, or written by a newer version). Unless it is provably not a
///   mark at all (its name is the BLAKE3 of its bytes, so it is what its writer stored, and it
///   does not start with `ARCAPEND`, so no prune wrote it), the writer cannot tell which packs are
///   doomed and avoids all of them ([`Marks::everything`]): the backup stores every blob again,
///   which costs space until the next prune but never references a pack about to vanish.
///
/// A pending object that cannot be fetched at all (a storage error) still fails: that is not
/// garbage, and the next attempt may read it.
pub fn marked_packs(store: &DynStore) -> Result<Marks> {
    let mut marks = Marks::default();
    let mut maybe_live_mark: Vec<String> = Vec::new();
    for info in store.list(ObjectKind::Pending)? {
        let bytes = match store.get(ObjectKind::Pending, &info.name) {
            Ok(b) => b,
            Err(e) if e.is_not_found() => continue, // removed by a finishing prune meanwhile
            Err(e) => return Err(Error::from(e).context(format!("reading pending-deletion mark {}", info.name))),
        };
        match decode(&bytes) {
            Ok(packs) => marks.packs.extend(packs.into_iter().map(|(_, id)| id)),
            Err(e) => {
                let provably_no_mark = hex::encode(content_hash(&bytes)) == info.name && !bytes.starts_with(MAGIC);
                if !provably_no_mark {
                    maybe_live_mark.push(info.name.clone());
                }
                marks.warnings.push(unreadable_message(&info.name, &e));
            }
        }
    }
    if !maybe_live_mark.is_empty() && prune_may_be_running(store)? {
        marks.everything = true;
        marks.warnings.push(format!(
            "a prune is running and the unreadable pending object(s) {} may be its mark: this run \
             deduplicates against nothing and stores every blob again (the next prune frees the copies)",
            maybe_live_mark.join(", ")
        ));
    }
    Ok(marks)
}

/// The warning (for writers) or error (for `check`) about an unreadable pending object.
pub fn unreadable_message(name: &str, e: &Error) -> String {
    format!(
        "pending-deletion mark {name} cannot be read ({e}; damaged, or not written by arca): ignored; \
         `arca check` reports it and the next `arca prune` removes it"
    )
}

/// Whether a lock that is not stale belongs to a prune, or cannot be read (and so might).
fn prune_may_be_running(store: &DynStore) -> Result<bool> {
    let now = chrono::Utc::now();
    Ok(crate::lock::list_locks(store)?.into_iter().any(|(_, info)| match info {
        Some(i) => i.operation == "prune" && !i.is_stale(now),
        None => true,
    }))
}

/// The pending objects that cannot be read (name and reason). Storage errors other than "not
/// found" are returned, not reported.
pub fn unreadable(store: &DynStore) -> Result<Vec<(String, Error)>> {
    let mut out = Vec::new();
    for info in store.list(ObjectKind::Pending)? {
        match store.get(ObjectKind::Pending, &info.name) {
            Ok(bytes) => {
                if let Err(e) = decode(&bytes) {
                    out.push((info.name, e));
                }
            }
            Err(e) if e.is_not_found() => {}
            Err(e) => return Err(Error::from(e).context(format!("reading pending-deletion mark {}", info.name))),
        }
    }
    Ok(out)
}
