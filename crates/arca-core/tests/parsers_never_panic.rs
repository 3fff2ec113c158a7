//! Every parser of stored (untrusted) bytes, fed damaged objects: it must return an error or a value
//! that round-trips, never panic and never allocate without bound.
//!
//! The same logic as the cargo-fuzz targets in `fuzz/` (see `fuzz/README.md`), as a proptest that
//! runs a few hundred cases per parser on every `cargo test`: build a valid object with the real
//! encoder, then apply edits (flip, set, insert, delete, truncate, overwrite a u32, insert a varint,
//! append) at random positions. For the authenticated formats the edits go to the plaintext before
//! sealing (the decoder behind the AEAD sees damaged bodies) and/or to the sealed bytes after it.
//! An object nobody edited must decode to exactly what was encoded.

use std::sync::OnceLock;

use arca_core::config::Config;
use arca_core::crypto::{MasterKey, NonceDomain};
use arca_core::envelope;
use arca_core::id::{BlobId, PackId, SnapshotId};
use arca_core::index::{self, Index, IndexPack, INDEX_MAGIC};
use arca_core::keys::{KdfParams, KeySlot};
use arca_core::pack::{self, BlobType, PackEntry, PackKind, PackWriter};
use arca_core::snapshot::{Snapshot, Summary, SNAPSHOT_MAGIC};
use arca_core::tree::{ContentRef, Node, NodeKind, Timestamp, Tree, Xattr};
use proptest::collection::{btree_set, vec};
use proptest::prelude::*;

fn master() -> &'static MasterKey {
    static M: OnceLock<MasterKey> = OnceLock::new();
    M.get_or_init(|| MasterKey::from_secret([7u8; 32]))
}

/// The associated data of a pack header (private in `pack`; a fresh pack's header is opened with
/// it, so a change there fails loudly here).
const PACK_HEADER_AAD: &[u8] = b"ARCAPACK header";
const TEST_MAGIC: &[u8; 8] = b"ARCATEST";
const CASES: u32 = 256;

// ---------------------------------------------------------------------------------------------
// Edits

#[derive(Debug, Clone)]
enum Edit {
    Flip(usize, u8),
    Set(usize, u8),
    Insert(usize, Vec<u8>),
    Delete(usize, usize),
    Truncate(usize),
    PutU32(usize, u32),
    Varint(usize, u64),
    Append(Vec<u8>),
}

fn interesting_u32() -> impl Strategy<Value = u32> {
    prop_oneof![Just(0u32), Just(1), Just(0x7f), Just(0xff), Just(0x7fff_ffff), Just(u32::MAX), any::<u32>()]
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        (any::<usize>(), 0u8..8).prop_map(|(p, b)| Edit::Flip(p, b)),
        (any::<usize>(), any::<u8>()).prop_map(|(p, v)| Edit::Set(p, v)),
        (any::<usize>(), vec(any::<u8>(), 1..16)).prop_map(|(p, v)| Edit::Insert(p, v)),
        (any::<usize>(), 1usize..64).prop_map(|(p, n)| Edit::Delete(p, n)),
        any::<usize>().prop_map(Edit::Truncate),
        (any::<usize>(), interesting_u32()).prop_map(|(p, v)| Edit::PutU32(p, v)),
        (any::<usize>(), prop_oneof![interesting_u32().prop_map(u64::from), Just(u64::MAX), any::<u64>()])
            .prop_map(|(p, v)| Edit::Varint(p, v)),
        vec(any::<u8>(), 1..16).prop_map(Edit::Append),
    ]
}

fn edits() -> impl Strategy<Value = Vec<Edit>> {
    vec(edit(), 0..4)
}

/// Applies the edits (positions taken modulo the current length); returns whether bytes changed.
fn apply(bytes: &mut Vec<u8>, edits: &[Edit]) -> bool {
    let original = bytes.clone();
    for e in edits {
        let len = bytes.len();
        match e {
            Edit::Flip(p, b) if len > 0 => bytes[p % len] ^= 1 << b,
            Edit::Set(p, v) if len > 0 => bytes[p % len] = *v,
            Edit::Insert(p, v) => {
                let p = p % (len + 1);
                bytes.splice(p..p, v.iter().copied());
            }
            Edit::Delete(p, n) if len > 0 => {
                let p = p % len;
                bytes.drain(p..p + (*n).min(len - p));
            }
            Edit::Truncate(p) => bytes.truncate(p % (len + 1)),
            Edit::PutU32(p, v) if len >= 4 => {
                let p = p % (len - 3);
                bytes[p..p + 4].copy_from_slice(&v.to_le_bytes());
            }
            Edit::Varint(p, v) => {
                let p = p % (len + 1);
                let (mut v, mut enc) = (*v, Vec::new());
                loop {
                    let b = (v & 0x7f) as u8;
                    v >>= 7;
                    if v == 0 {
                        enc.push(b);
                        break;
                    }
                    enc.push(b | 0x80);
                }
                bytes.splice(p..p, enc);
            }
            Edit::Append(v) => bytes.extend_from_slice(v),
            _ => {}
        }
    }
    *bytes != original
}

#[derive(Debug, Clone)]
enum ManifestEdit {
    Remove(usize),
    Duplicate(usize, usize),
    FlipKind(usize),
    FlipId(usize, usize),
    Push([u8; 32]),
}

fn manifest_edits() -> impl Strategy<Value = Vec<ManifestEdit>> {
    vec(
        prop_oneof![
            any::<usize>().prop_map(ManifestEdit::Remove),
            (any::<usize>(), any::<usize>()).prop_map(|(a, b)| ManifestEdit::Duplicate(a, b)),
            any::<usize>().prop_map(ManifestEdit::FlipKind),
            (any::<usize>(), any::<usize>()).prop_map(|(a, b)| ManifestEdit::FlipId(a, b)),
            any::<[u8; 32]>().prop_map(ManifestEdit::Push),
        ],
        0..3,
    )
}

fn apply_manifest(m: &mut Vec<(PackKind, PackId)>, edits: &[ManifestEdit]) -> bool {
    let original = m.clone();
    for e in edits {
        let len = m.len();
        match *e {
            ManifestEdit::Remove(p) if len > 0 => {
                m.remove(p % len);
            }
            ManifestEdit::Duplicate(a, b) if len > 0 => {
                let x = m[a % len];
                m.insert(b % (len + 1), x);
            }
            ManifestEdit::FlipKind(p) if len > 0 => {
                let k = &mut m[p % len].0;
                *k = if *k == PackKind::Data { PackKind::Meta } else { PackKind::Data };
            }
            ManifestEdit::FlipId(p, i) if len > 0 => m[p % len].1 .0[i % 32] ^= 1,
            ManifestEdit::Push(id) => m.push((PackKind::Data, PackId(id))),
            _ => {}
        }
    }
    *m != original
}

/// How to damage an envelope: edits to the body plaintext and manifest before re-sealing (if
/// `Some`), then edits to the sealed bytes.
#[derive(Debug, Clone)]
struct Damage {
    inner: Option<(Vec<Edit>, Vec<ManifestEdit>)>,
    outer: Vec<Edit>,
}

fn damage() -> impl Strategy<Value = Damage> {
    (proptest::option::of((edits(), manifest_edits())), edits()).prop_map(|(inner, outer)| Damage { inner, outer })
}

fn damage_envelope(magic: &[u8; 8], mut bytes: Vec<u8>, d: &Damage) -> (Vec<u8>, bool) {
    let mut inner_changed = false;
    if let Some((body_edits, manifest_edits)) = &d.inner {
        let (mut manifest, mut body) = envelope::open(master(), magic, &bytes).expect("a fresh object opens");
        let body_changed = apply(&mut body, body_edits);
        let manifest_changed = apply_manifest(&mut manifest, manifest_edits);
        inner_changed = body_changed || manifest_changed;
        if inner_changed {
            bytes = envelope::seal(master(), magic, &manifest, &body);
        }
    }
    let outer_changed = apply(&mut bytes, &d.outer);
    (bytes, inner_changed || outer_changed)
}

fn manifest(max: usize) -> impl Strategy<Value = Vec<(PackKind, PackId)>> {
    vec((pack_kind(), any::<[u8; 32]>().prop_map(PackId)), 0..max)
}

fn pack_kind() -> impl Strategy<Value = PackKind> {
    prop_oneof![Just(PackKind::Data), Just(PackKind::Meta)]
}

fn blob_type() -> impl Strategy<Value = BlobType> {
    prop_oneof![Just(BlobType::Data), Just(BlobType::Tree)]
}

// ---------------------------------------------------------------------------------------------
// Checks: what every successfully parsed value must satisfy.

fn check_pack(bytes: &[u8]) -> Option<Vec<(PackEntry, Vec<u8>)>> {
    let _ = pack::parse_prefix(bytes);
    let (entries, salt) = pack::read_header(master(), bytes).ok()?;
    assert_eq!(pack::parse_prefix(bytes).ok(), Some(salt));
    let mut out = Vec::new();
    let mut all_ok = true;
    for e in &entries {
        // read_header promises every entry lies inside the pack.
        let sealed = &bytes[e.offset as usize..e.offset as usize + e.length as usize];
        match pack::open_blob(master(), &salt, e, sealed) {
            Ok(plain) => {
                assert_eq!(plain.len(), e.raw_length as usize);
                assert_eq!(master().blob_id(&plain), e.id);
                out.push((*e, plain));
            }
            Err(_) => all_ok = false,
        }
    }
    all_ok.then_some(out)
}

/// An envelope's manifest and body.
type Opened = (Vec<(PackKind, PackId)>, Vec<u8>);

fn check_envelope(magic: &[u8; 8], bytes: &[u8]) -> Option<Opened> {
    let manifest = envelope::read_manifest(magic, bytes);
    if let Ok((packs, salt_at)) = &manifest {
        // Version 2 adds the 8-byte logical size after the manifest.
        let logical = if bytes[8] >= 2 { 8 } else { 0 };
        assert_eq!(*salt_at, 13 + 33 * packs.len() + logical);
        assert!(salt_at + 32 + 16 <= bytes.len());
    }
    let (packs, body) = envelope::open(master(), magic, bytes).ok()?;
    assert_eq!(manifest.expect("open succeeded, so the manifest reads").0, packs);
    let again = envelope::seal(master(), magic, &packs, &body);
    assert_eq!(
        envelope::open(master(), magic, &again).expect("a re-sealed envelope opens"),
        (packs.clone(), body.clone())
    );
    Some((packs, body))
}

fn check_index(bytes: &[u8]) -> Option<Vec<IndexPack>> {
    let packs = index::decode_index(master(), bytes).ok()?;
    let again = index::encode_index(master(), &packs);
    assert_eq!(index::decode_index(master(), &again).expect("a re-encoded index decodes"), packs);
    let mut idx = Index::new();
    for p in &packs {
        idx.add_pack(p);
    }
    // A pack listed twice keeps its first listing (`Index::add_pack` ignores known packs), so only
    // the blobs of first listings must be findable.
    let mut seen = std::collections::HashSet::new();
    for p in &packs {
        assert!(idx.pack_by_id(&p.id).is_some());
        if seen.insert(p.id) {
            for b in &p.blobs {
                assert!(idx.get(&b.id).is_some());
            }
        }
    }
    let _ = idx.entries_by_pack();
    Some(packs)
}

fn check_tree(bytes: &[u8]) -> Option<Tree> {
    let t = Tree::decode(bytes).ok()?;
    let mut again = t.clone();
    let encoded = again.encode();
    assert_eq!(again, t, "a decoded tree was not in encode's order");
    assert_eq!(Tree::decode(&encoded).expect("a re-encoded tree decodes"), t);
    for n in &t.nodes {
        assert!(t.find(&n.name).is_some());
        let _ = (n.type_char(), n.name_lossy(), n.mtime.to_chrono(), n.atime.to_chrono(), n.ctime.to_chrono());
        let _ = n.content.iter().map(|c| c.len()).fold(0u64, |a, b| a.wrapping_add(b));
    }
    Some(t)
}

fn check_snapshot(bytes: &[u8]) -> Option<(Snapshot, Vec<(PackKind, PackId)>)> {
    let (snap, packs) = Snapshot::decode(master(), bytes).ok()?;
    assert_eq!(envelope::read_manifest(SNAPSHOT_MAGIC, bytes).expect("decoded, so the manifest reads").0, packs);
    let again = snap.encode(master(), &packs);
    assert_eq!(
        Snapshot::decode(master(), &again).expect("a re-encoded snapshot decodes"),
        (snap.clone(), packs.clone())
    );
    Some((snap, packs))
}

const PASSWORD: &[u8] = b"fuzz password";

/// Parses a slot and, when its KDF cost is tiny, opens it (never runs an expensive Argon2).
fn check_slot(bytes: &[u8]) -> Option<(KeySlot, Option<Option<[u8; 32]>>)> {
    let slot = KeySlot::from_bytes(bytes).ok()?;
    let stored = slot.to_bytes();
    let again = KeySlot::from_bytes(&stored).expect("a re-serialised slot parses");
    assert_eq!(again.to_bytes(), stored, "key slot JSON does not round-trip");
    let tiny = slot.params.memory_kib <= 64 && slot.params.iterations <= 1;
    let opened = tiny.then(|| slot.open(PASSWORD).ok().flatten().map(|k| *k.blob_id(b"probe").as_bytes()));
    Some((slot, opened))
}

fn check_config(bytes: &[u8]) -> Option<Config> {
    let c = Config::from_bytes(bytes).ok()?;
    c.chunker.validate().expect("from_bytes validated the chunker");
    assert_eq!(Config::from_bytes(&c.to_bytes()).expect("a re-serialised config parses"), c);
    Some(c)
}

// ---------------------------------------------------------------------------------------------
// Generators

fn timestamp() -> impl Strategy<Value = Timestamp> {
    (any::<i64>(), prop_oneof![0u32..1_000_000_000, any::<u32>()]).prop_map(|(secs, nanos)| Timestamp { secs, nanos })
}

fn node_kind() -> impl Strategy<Value = NodeKind> {
    prop_oneof![
        Just(NodeKind::File),
        Just(NodeKind::Dir),
        vec(any::<u8>(), 0..32).prop_map(|target| NodeKind::Symlink { target }),
        Just(NodeKind::Fifo),
        Just(NodeKind::Socket),
        any::<u64>().prop_map(|rdev| NodeKind::CharDevice { rdev }),
        any::<u64>().prop_map(|rdev| NodeKind::BlockDevice { rdev }),
    ]
}

fn content_ref() -> impl Strategy<Value = ContentRef> {
    prop_oneof![
        (any::<[u8; 32]>(), any::<u32>()).prop_map(|(id, length)| ContentRef::Blob { id: BlobId(id), length }),
        any::<u64>().prop_map(|length| ContentRef::Zeros { length }),
    ]
}

/// A node without a name; `consistent`: directories, and only they, have a subtree.
fn node(consistent: bool) -> impl Strategy<Value = Node> {
    let ids = (any::<u32>(), any::<u32>(), any::<u32>(), any::<u64>(), any::<u64>(), any::<u64>(), any::<u64>());
    let names = (proptest::option::of("[a-z]{0,8}"), proptest::option::of(any::<String>()));
    let times = (timestamp(), timestamp(), timestamp());
    let extra = (
        vec((vec(any::<u8>(), 0..16), vec(any::<u8>(), 0..32)), 0..3),
        vec(content_ref(), 0..4),
        any::<[u8; 32]>(),
        any::<bool>(),
    );
    (node_kind(), ids, names, times, extra).prop_map(
        move |(kind, (mode, uid, gid, inode, device, links, size), (user, group), (mtime, atime, ctime), x)| {
            let (xattrs, content, sub, has_sub) = x;
            let has_sub = if consistent { matches!(kind, NodeKind::Dir) } else { has_sub };
            Node {
                name: Vec::new(),
                kind,
                mode,
                uid,
                gid,
                user,
                group,
                mtime,
                atime,
                ctime,
                inode,
                device,
                links,
                size,
                xattrs: xattrs.into_iter().map(|(name, value)| Xattr { name, value }).collect(),
                content,
                subtree: has_sub.then_some(BlobId(sub)),
            }
        },
    )
}

fn safe_name() -> impl Strategy<Value = Vec<u8>> {
    vec(any::<u8>(), 1..12).prop_map(|mut n| {
        n.retain(|&b| b != b'/' && b != 0);
        if n.is_empty() || n == b"." || n == b".." {
            n.insert(0, b'n');
        }
        n
    })
}

/// A tree, and whether it obeys §"Trees".
fn tree() -> impl Strategy<Value = (Tree, bool)> {
    prop_oneof![
        (btree_set(safe_name(), 0..6), vec(node(true), 6)).prop_map(|(names, nodes)| {
            let nodes = names.into_iter().zip(nodes).map(|(name, n)| Node { name, ..n }).collect();
            (Tree { nodes }, true)
        }),
        vec((vec(any::<u8>(), 0..6), node(false)), 0..6)
            .prop_map(|v| { (Tree { nodes: v.into_iter().map(|(name, n)| Node { name, ..n }).collect() }, false) }),
    ]
}

fn time() -> impl Strategy<Value = chrono::DateTime<chrono::Utc>> {
    // All of chrono's range, so 5-digit and negative years go through serde too.
    (any::<i64>(), 0u32..2_000_000_000)
        .prop_map(|(s, n)| chrono::DateTime::from_timestamp(s % 8_210_298_412_799, n).unwrap_or_default())
}

fn snapshot() -> impl Strategy<Value = Snapshot> {
    let head = (
        time(),
        any::<[u8; 32]>(),
        vec(any::<String>(), 0..3),
        any::<String>(),
        "[a-z]{0,8}",
        vec("[a-z]{0,6}", 0..3),
        proptest::option::of(any::<[u8; 32]>()),
        "[0-9.]{0,8}",
    );
    let summary = (proptest::option::of(time()), proptest::option::of(time()), vec(any::<u64>(), 11)).prop_map(
        |(backup_start, backup_end, n)| Summary {
            backup_start,
            backup_end,
            files_new: n[0],
            files_changed: n[1],
            files_unmodified: n[2],
            dirs: n[3],
            others: n[4],
            total_bytes: n[5],
            bytes_read: n[6],
            data_added: n[7],
            data_added_packed: n[8],
            blobs_added: n[9],
            errors: n[10],
        },
    );
    (head, summary).prop_map(|((time, tree, paths, hostname, username, tags, parent, program_version), summary)| {
        Snapshot {
            time,
            tree: BlobId(tree),
            paths,
            hostname,
            username,
            tags,
            parent: parent.map(SnapshotId),
            summary,
            program_version,
        }
    })
}

fn index_packs() -> impl Strategy<Value = Vec<IndexPack>> {
    let entry = (blob_type(), any::<[u8; 32]>(), any::<u32>(), any::<u32>(), any::<u32>(), any::<bool>()).prop_map(
        |(blob_type, id, offset, length, raw_length, compressed)| PackEntry {
            blob_type,
            id: BlobId(id),
            offset,
            length,
            raw_length,
            compressed,
        },
    );
    vec(
        (any::<[u8; 32]>(), pack_kind(), any::<[u8; 32]>(), any::<u64>(), vec(entry, 0..6))
            .prop_map(|(id, kind, salt, size, blobs)| IndexPack { id: PackId(id), kind, salt, size, blobs }),
        0..4,
    )
}

/// How a pack writer lies about one blob (all of it sealed with the right key).
#[derive(Debug, Clone)]
struct Lie {
    wrong_id: Option<[u8; 32]>,
    use_compressed: bool,
    payload_edits: Vec<Edit>,
    raw_length: Option<u32>,
    compressed_flag: bool,
}

#[derive(Debug, Clone)]
struct PlannedBlob {
    blob_type: BlobType,
    plain: Vec<u8>,
    lie: Option<Lie>,
}

fn plaintext() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        vec(any::<u8>(), 0..512),
        // Compressible runs, so the zstd path is taken.
        vec((any::<u8>(), 1usize..4096), 0..4)
            .prop_map(|runs| runs.into_iter().flat_map(|(b, n)| std::iter::repeat_n(b, n)).collect()),
    ]
}

fn planned_blob() -> impl Strategy<Value = PlannedBlob> {
    let lie = (
        proptest::option::of(any::<[u8; 32]>()),
        any::<bool>(),
        edits(),
        proptest::option::of(interesting_u32()),
        any::<bool>(),
    )
        .prop_map(|(wrong_id, use_compressed, payload_edits, raw_length, compressed_flag)| Lie {
            wrong_id,
            use_compressed,
            payload_edits,
            raw_length,
            compressed_flag,
        });
    (blob_type(), plaintext(), proptest::option::weighted(0.3, lie)).prop_map(|(blob_type, plain, lie)| PlannedBlob {
        blob_type,
        plain,
        lie,
    })
}

#[derive(Debug, Clone)]
enum SlotEdit {
    Memory(u32),
    Iterations(u32),
    Parallelism(u32),
    Version(u32),
    Kdf(String),
    Salt(String),
    Nonce(String),
    Sealed(String),
    Label(String),
}

fn slot_edit() -> impl Strategy<Value = SlotEdit> {
    prop_oneof![
        prop::sample::select(vec![0u32, 1, 7, 8, 16, 63, 64, 65, u32::MAX]).prop_map(SlotEdit::Memory),
        prop::sample::select(vec![0u32, 1, 2, u32::MAX]).prop_map(SlotEdit::Iterations),
        prop::sample::select(vec![0u32, 1, 2, 8, 9, 0xff_ffff, u32::MAX]).prop_map(SlotEdit::Parallelism),
        any::<u32>().prop_map(SlotEdit::Version),
        "[a-z0-9]{0,10}".prop_map(SlotEdit::Kdf),
        "[A-Za-z0-9+/=]{0,40}".prop_map(SlotEdit::Salt),
        "[A-Za-z0-9+/=]{0,24}".prop_map(SlotEdit::Nonce),
        "[A-Za-z0-9+/=]{0,80}".prop_map(SlotEdit::Sealed),
        any::<String>().prop_map(SlotEdit::Label),
    ]
}

fn apply_slot_edit(s: &mut KeySlot, e: &SlotEdit) {
    match e.clone() {
        SlotEdit::Memory(v) => s.params.memory_kib = v,
        SlotEdit::Iterations(v) => s.params.iterations = v,
        SlotEdit::Parallelism(v) => s.params.parallelism = v,
        SlotEdit::Version(v) => s.version = v,
        SlotEdit::Kdf(v) => s.kdf = v,
        SlotEdit::Salt(v) => s.salt = v,
        SlotEdit::Nonce(v) => s.nonce = v,
        SlotEdit::Sealed(v) => s.sealed = v,
        SlotEdit::Label(v) => s.label = v,
    }
}

fn fresh_slot() -> &'static KeySlot {
    static S: OnceLock<KeySlot> = OnceLock::new();
    S.get_or_init(|| {
        KeySlot::seal(master(), PASSWORD, KdfParams { memory_kib: 64, iterations: 1, parallelism: 1 }, "test")
            .expect("sealing with tiny parameters works")
    })
}

#[derive(Debug, Clone)]
enum ConfigEdit {
    Version(u32),
    Min(u32),
    Avg(u32),
    Max(u32),
    Level(i32),
    DataPack(u32),
    MetaPack(u32),
    Cipher(String),
}

fn config_edit() -> impl Strategy<Value = ConfigEdit> {
    prop_oneof![
        any::<u32>().prop_map(ConfigEdit::Version),
        any::<u32>().prop_map(ConfigEdit::Min),
        any::<u32>().prop_map(ConfigEdit::Avg),
        any::<u32>().prop_map(ConfigEdit::Max),
        any::<i32>().prop_map(ConfigEdit::Level),
        any::<u32>().prop_map(ConfigEdit::DataPack),
        any::<u32>().prop_map(ConfigEdit::MetaPack),
        any::<String>().prop_map(ConfigEdit::Cipher),
    ]
}

// ---------------------------------------------------------------------------------------------
// The properties

proptest! {
    #![proptest_config(ProptestConfig::with_cases(CASES))]

    #[test]
    fn pack_header_and_blobs(
        blobs in vec(planned_blob(), 0..5),
        header_edits in proptest::option::of(edits()),
        outer in edits(),
    ) {
        let m = master();
        let mut w = PackWriter::new(m, 0);
        for b in &blobs {
            let compressed = pack::compress(&b.plain, 1);
            match &b.lie {
                None => {
                    let id = m.blob_id(&b.plain);
                    match &compressed {
                        Some(c) => w.add(b.blob_type, id, c, b.plain.len() as u32, true),
                        None => w.add(b.blob_type, id, &b.plain, b.plain.len() as u32, false),
                    }
                }
                Some(lie) => {
                    let id = lie.wrong_id.map(BlobId).unwrap_or_else(|| m.blob_id(&b.plain));
                    let mut payload = match (&compressed, lie.use_compressed) {
                        (Some(c), true) => c.clone(),
                        _ => b.plain.clone(),
                    };
                    apply(&mut payload, &lie.payload_edits);
                    let raw_length = lie.raw_length.unwrap_or(b.plain.len() as u32);
                    w.add(b.blob_type, id, &payload, raw_length, lie.compressed_flag);
                }
            }
        }
        let fin = w.finish();
        let mut bytes = fin.bytes.clone();
        let mut header_changed = false;
        if let Some(header_edits) = &header_edits {
            let header_len = u32::from_le_bytes(bytes[bytes.len() - 4..].try_into().unwrap()) as usize;
            let header_end = bytes.len() - 4;
            let header_start = header_end - header_len;
            let key = m.object_key(&fin.salt);
            let mut plain = key
                .open(NonceDomain::PackHeader, 0, PACK_HEADER_AAD, &bytes[header_start..header_end])
                .expect("a fresh pack's header opens (has the header AAD changed?)");
            header_changed = apply(&mut plain, header_edits);
            key.seal_in_place(NonceDomain::PackHeader, 0, PACK_HEADER_AAD, &mut plain);
            bytes.truncate(header_start);
            bytes.extend_from_slice(&plain);
            bytes.extend_from_slice(&(plain.len() as u32).to_le_bytes());
        }
        let outer_changed = apply(&mut bytes, &outer);
        let opened = check_pack(&bytes);
        if !header_changed && !outer_changed {
            let (entries, salt) = pack::read_header(m, &bytes).expect("an untouched pack's header reads");
            prop_assert_eq!(&entries, &fin.entries);
            prop_assert_eq!(salt, fin.salt);
            if blobs.iter().all(|b| b.lie.is_none()) {
                let opened = opened.expect("every blob of an untouched honest pack opens");
                prop_assert_eq!(opened.len(), blobs.len());
                for ((e, plain), b) in opened.iter().zip(&blobs) {
                    prop_assert_eq!(e.blob_type, b.blob_type);
                    prop_assert_eq!(plain, &b.plain);
                }
            }
        }
    }

    #[test]
    fn pack_raw_bytes(bytes in vec(any::<u8>(), 0..200)) {
        let _ = check_pack(&bytes);
    }

    #[test]
    fn envelope_manifest_and_open(
        magic in prop::sample::select(vec![*INDEX_MAGIC, *SNAPSHOT_MAGIC, *TEST_MAGIC]),
        packs in manifest(8),
        body in vec(any::<u8>(), 0..256),
        outer in edits(),
    ) {
        let mut bytes = envelope::seal(master(), &magic, &packs, &body);
        let changed = apply(&mut bytes, &outer);
        let opened = check_envelope(&magic, &bytes);
        if !changed {
            prop_assert_eq!(opened, Some((packs, body)));
        }
    }

    #[test]
    fn envelope_raw_bytes(bytes in vec(any::<u8>(), 0..200)) {
        for magic in [INDEX_MAGIC, SNAPSHOT_MAGIC, TEST_MAGIC] {
            let _ = check_envelope(magic, &bytes);
        }
    }

    #[test]
    fn index_decode(packs in index_packs(), d in damage()) {
        let (bytes, changed) = damage_envelope(INDEX_MAGIC, index::encode_index(master(), &packs), &d);
        let decoded = check_index(&bytes);
        if !changed {
            prop_assert_eq!(decoded, Some(packs));
        }
    }

    #[test]
    fn tree_decode((mut tree, valid) in tree(), e in edits()) {
        let mut bytes = tree.encode();
        let changed = apply(&mut bytes, &e);
        let decoded = check_tree(&bytes);
        if valid && !changed {
            prop_assert_eq!(decoded, Some(tree));
        }
    }

    #[test]
    fn tree_raw_bytes(bytes in vec(any::<u8>(), 0..300)) {
        let _ = check_tree(&bytes);
    }

    #[test]
    fn snapshot_decode(snap in snapshot(), packs in manifest(4), d in damage()) {
        let (bytes, changed) = damage_envelope(SNAPSHOT_MAGIC, snap.encode(master(), &packs), &d);
        let decoded = check_snapshot(&bytes);
        if !changed {
            prop_assert_eq!(decoded, Some((snap, packs)));
        }
    }

    #[test]
    fn keyslot_from_bytes(field_edits in vec(slot_edit(), 0..3), e in edits()) {
        let mut slot = fresh_slot().clone();
        for f in &field_edits {
            apply_slot_edit(&mut slot, f);
        }
        let mut bytes = slot.to_bytes();
        let changed = apply(&mut bytes, &e);
        let checked = check_slot(&bytes);
        if field_edits.is_empty() && !changed {
            let (_, opened) = checked.expect("an untouched slot parses");
            prop_assert_eq!(opened, Some(Some(*master().blob_id(b"probe").as_bytes())));
        }
    }

    #[test]
    fn config_from_bytes(field_edits in vec(config_edit(), 0..3), e in edits()) {
        let mut c = Config::new();
        for f in &field_edits {
            match f.clone() {
                ConfigEdit::Version(v) => c.version = v,
                ConfigEdit::Min(v) => c.chunker.min_size = v,
                ConfigEdit::Avg(v) => c.chunker.avg_size = v,
                ConfigEdit::Max(v) => c.chunker.max_size = v,
                ConfigEdit::Level(v) => c.compression_level = v,
                ConfigEdit::DataPack(v) => c.data_pack_size = v,
                ConfigEdit::MetaPack(v) => c.meta_pack_size = v,
                ConfigEdit::Cipher(v) => c.cipher = v,
            }
        }
        let mut bytes = c.to_bytes();
        let changed = apply(&mut bytes, &e);
        let decoded = check_config(&bytes);
        if field_edits.is_empty() && !changed {
            prop_assert_eq!(decoded, Some(c));
        }
    }

    #[test]
    fn json_raw_bytes(bytes in vec(any::<u8>(), 0..200)) {
        let _ = check_slot(&bytes);
        let _ = check_config(&bytes);
    }
}
