//! `S3Store` against a real S3-compatible server (a single-node Garage in CI and for developers).
//!
//! Needs `ARCA_TEST_S3=s3://BUCKET?endpoint=...&region=...` plus `AWS_ACCESS_KEY_ID` and
//! `AWS_SECRET_ACCESS_KEY`; `eval "$(scripts/test-services.sh)"` sets all three. Without them each
//! test fails saying so, unless `ARCA_TEST_ALLOW_MISSING_SERVICES=1` asks to skip it (it then prints why).
//! Every test works under its own random prefix and removes what it wrote.
#![cfg(feature = "s3")]

use std::sync::Arc;
use std::thread;

use arca_store::{ErrorKind, ObjectInfo, ObjectKind, S3Config, S3Store, Store};
use rand::{Rng, RngCore};

/// A store under a fresh random prefix of the test bucket, or `None` (test skipped).
fn test_store(test: &str) -> Option<S3Store> {
    let url = match std::env::var("ARCA_TEST_S3") {
        Ok(url) if !url.trim().is_empty() => url,
        _ => {
            if std::env::var("ARCA_TEST_ALLOW_MISSING_SERVICES").as_deref() != Ok("1") {
                panic!(
                    "ARCA_TEST_S3 is not set (set ARCA_TEST_ALLOW_MISSING_SERVICES=1 to skip): start the test services with \
                     `eval \"$(scripts/test-services.sh)\"` (a single-node Garage) and run the tests again"
                );
            }
            eprintln!("skipped: set ARCA_TEST_S3 (see scripts/test-services.sh)");
            return None;
        }
    };
    let config = S3Config::from_url(&url).unwrap_or_else(|e| panic!("ARCA_TEST_S3={url:?}: {e}"));
    let store = S3Store::open(&config).unwrap_or_else(|e| panic!("opening {url:?}: {e}"));
    let mut tag = [0u8; 6];
    rand::thread_rng().fill_bytes(&mut tag);
    Some(store.with_prefix(&format!("arca-store-tests/{test}-{}", hex::encode(tag))))
}

/// Deletes everything under the store's prefix (best effort: a leftover is only garbage).
fn clean(store: &S3Store) {
    for kind in ObjectKind::ALL {
        for info in store.list(kind).unwrap_or_default() {
            let _ = store.delete(kind, &info.name);
        }
    }
}

fn random_bytes(len: usize) -> Vec<u8> {
    let mut v = vec![0u8; len];
    rand::thread_rng().fill_bytes(&mut v);
    v
}

fn name(i: u64) -> String {
    hex::encode(blake3_like(i))
}

/// 32 bytes derived from `i`, standing in for a content hash (names are 64 hex digits).
fn blake3_like(i: u64) -> [u8; 32] {
    let mut out = [0u8; 32];
    let mut x = i.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0xD1B5_4A32_D192_ED03;
    for chunk in out.chunks_mut(8) {
        x ^= x >> 33;
        x = x.wrapping_mul(0xFF51_AFD7_ED55_8CCD);
        x ^= x >> 29;
        chunk.copy_from_slice(&x.to_le_bytes());
    }
    out
}

fn sorted(mut v: Vec<ObjectInfo>) -> Vec<ObjectInfo> {
    v.sort_by(|a, b| a.name.cmp(&b.name));
    v
}

#[test]
fn put_get_round_trip_including_20_mib() {
    let Some(store) = test_store("roundtrip") else { return };
    let small = b"hello, bucket".to_vec();
    store.put(ObjectKind::Key, "k1", &small).unwrap();
    assert_eq!(store.get(ObjectKind::Key, "k1").unwrap(), small);

    let empty_name = name(1);
    store.put(ObjectKind::Index, &empty_name, b"").unwrap();
    assert_eq!(store.get(ObjectKind::Index, &empty_name).unwrap(), Vec::<u8>::new());
    assert_eq!(store.stat(ObjectKind::Index, &empty_name).unwrap(), Some(0));

    let big = random_bytes(20 << 20);
    let big_name = name(2);
    store.put(ObjectKind::DataPack, &big_name, &big).unwrap();
    assert_eq!(store.stat(ObjectKind::DataPack, &big_name).unwrap(), Some(big.len() as u64));
    let back = store.get(ObjectKind::DataPack, &big_name).unwrap();
    assert!(back == big, "20 MiB object came back different ({} bytes)", back.len());

    // Writing the same name again (a retried upload) is allowed.
    store.put(ObjectKind::Key, "k1", &small).unwrap();
    assert_eq!(store.get(ObjectKind::Key, "k1").unwrap(), small);

    let err = store.get(ObjectKind::Key, "missing").unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
    assert!(err.to_string().contains("keys/missing"), "message should name the key: {err}");
    clean(&store);
}

#[test]
fn get_range_and_truncation() {
    let Some(store) = test_store("range") else { return };
    let bytes: Vec<u8> = (0..10_000u32).map(|i| (i % 251) as u8).collect();
    let n = name(3);
    store.put(ObjectKind::MetaPack, &n, &bytes).unwrap();
    assert_eq!(store.get_range(ObjectKind::MetaPack, &n, 0, 10).unwrap(), &bytes[..10]);
    assert_eq!(store.get_range(ObjectKind::MetaPack, &n, 1234, 4000).unwrap(), &bytes[1234..5234]);
    assert_eq!(store.get_range(ObjectKind::MetaPack, &n, 9_990, 10).unwrap(), &bytes[9_990..]);
    assert_eq!(store.get_range(ObjectKind::MetaPack, &n, 10_000, 0).unwrap(), Vec::<u8>::new());

    for (offset, length) in [(9_995, 10), (10_000, 1), (20_000, 5), (10_001, 0), (0, u64::MAX)] {
        let err = store.get_range(ObjectKind::MetaPack, &n, offset, length).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Truncated, "offset {offset} length {length}: {err}");
    }
    let err = store.get_range(ObjectKind::MetaPack, &name(4), 0, 1).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
    clean(&store);
}

#[test]
fn stat_missing_and_delete_is_idempotent() {
    let Some(store) = test_store("delete") else { return };
    let n = name(5);
    assert_eq!(store.stat(ObjectKind::Snapshot, &n).unwrap(), None);
    store.delete(ObjectKind::Snapshot, &n).unwrap();
    store.put(ObjectKind::Snapshot, &n, b"snap").unwrap();
    assert_eq!(store.stat(ObjectKind::Snapshot, &n).unwrap(), Some(4));
    store.delete(ObjectKind::Snapshot, &n).unwrap();
    assert_eq!(store.stat(ObjectKind::Snapshot, &n).unwrap(), None);
    store.delete(ObjectKind::Snapshot, &n).unwrap();
    assert!(store.list(ObjectKind::Snapshot).unwrap().is_empty());
}

#[test]
fn list_pages_past_1000_objects() {
    let Some(store) = test_store("list") else { return };
    const N: u64 = 1100;
    let store = Arc::new(store);
    // Upload from 8 threads to keep the test short.
    let workers: Vec<_> = (0..8u64)
        .map(|t| {
            let store = Arc::clone(&store);
            thread::spawn(move || {
                for i in (t..N).step_by(8) {
                    store.put(ObjectKind::DataPack, &name(i), &vec![7u8; (i % 5) as usize]).unwrap();
                }
            })
        })
        .collect();
    for w in workers {
        w.join().unwrap();
    }
    store.put(ObjectKind::Index, &name(9_999), b"idx").unwrap();

    let listed = sorted(store.list(ObjectKind::DataPack).unwrap());
    let expected = sorted((0..N).map(|i| ObjectInfo { name: name(i), size: i % 5 }).collect());
    assert_eq!(listed.len(), N as usize);
    assert_eq!(listed, expected);
    // Kinds do not bleed into each other, and nothing outside the prefix shows.
    assert_eq!(store.list(ObjectKind::Index).unwrap(), vec![ObjectInfo { name: name(9_999), size: 3 }]);
    assert!(store.list(ObjectKind::MetaPack).unwrap().is_empty());
    assert!(store.with_prefix("elsewhere").list(ObjectKind::DataPack).unwrap().is_empty());

    let workers: Vec<_> = (0..8u64)
        .map(|t| {
            let store = Arc::clone(&store);
            thread::spawn(move || {
                for i in (t..N).step_by(8) {
                    store.delete(ObjectKind::DataPack, &name(i)).unwrap();
                }
            })
        })
        .collect();
    for w in workers {
        w.join().unwrap();
    }
    assert!(store.list(ObjectKind::DataPack).unwrap().is_empty());
    clean(&store);
}

#[test]
fn create_and_exists() {
    let Some(store) = test_store("create") else { return };
    assert!(!store.exists().unwrap());
    store.create().unwrap();
    assert!(!store.exists().unwrap(), "create writes no config; the engine does");
    store.put(ObjectKind::Config, "config", b"{}").unwrap();
    assert!(store.exists().unwrap());
    assert_eq!(store.list(ObjectKind::Config).unwrap(), vec![ObjectInfo { name: "config".into(), size: 2 }]);
    let err = store.create().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::AlreadyExists, "{err}");
    // A sibling prefix is a different repository.
    let sibling = store.with_prefix("other");
    assert!(!sibling.exists().unwrap());
    sibling.create().unwrap();
    assert!(store.location().starts_with("s3://"), "{}", store.location());
    clean(&store);
}

#[test]
fn create_in_a_missing_bucket_fails() {
    let Some(store) = test_store("nobucket") else { return };
    let url = std::env::var("ARCA_TEST_S3").unwrap();
    let mut config = S3Config::from_url(&url).unwrap();
    config.bucket = format!("arca-missing-{}", rand::thread_rng().gen::<u32>());
    let missing = S3Store::open(&config).unwrap();
    let err = missing.create().unwrap_err();
    assert!(matches!(err.kind(), ErrorKind::NotFound | ErrorKind::PermissionDenied), "{err}");
    assert!(err.to_string().contains(&config.bucket), "{err}");
    drop(store);
}

#[test]
fn wrong_secret_is_permission_denied() {
    let Some(_store) = test_store("badkey") else { return };
    let mut config = S3Config::from_url(&std::env::var("ARCA_TEST_S3").unwrap()).unwrap();
    config.secret_access_key = "0".repeat(64);
    let store = S3Store::open(&config).unwrap();
    let err = store.stat(ObjectKind::Config, "config").unwrap_err();
    assert_eq!(err.kind(), ErrorKind::PermissionDenied, "{err}");
    let err = store.put(ObjectKind::Key, "k", b"x").unwrap_err();
    assert_eq!(err.kind(), ErrorKind::PermissionDenied, "{err}");
}

#[test]
fn invalid_names_are_refused() {
    let Some(store) = test_store("names") else { return };
    for bad in ["", "../config", "a/b", "UPPER", "x.y", &"a".repeat(129)] {
        let check = |r: arca_store::Result<()>| {
            assert_eq!(r.unwrap_err().kind(), ErrorKind::InvalidName, "{bad:?}");
        };
        check(store.put(ObjectKind::Key, bad, b"x"));
        check(store.get(ObjectKind::Key, bad).map(|_| ()));
        check(store.get_range(ObjectKind::Key, bad, 0, 1).map(|_| ()));
        check(store.stat(ObjectKind::Key, bad).map(|_| ()));
        check(store.delete(ObjectKind::Key, bad));
    }
    assert!(store.list(ObjectKind::Key).unwrap().is_empty());
}

#[test]
fn concurrent_puts_from_8_threads() {
    let Some(store) = test_store("concurrent") else { return };
    let store = Arc::new(store);
    let workers: Vec<_> = (0..8u64)
        .map(|t| {
            let store = Arc::clone(&store);
            thread::spawn(move || {
                let mut written = Vec::new();
                for j in 0..6u64 {
                    let i = 100 + t * 6 + j;
                    let bytes = random_bytes(256 * 1024 + i as usize);
                    store.put(ObjectKind::DataPack, &name(i), &bytes).unwrap();
                    written.push((i, bytes));
                }
                for (i, bytes) in written {
                    assert!(store.get(ObjectKind::DataPack, &name(i)).unwrap() == bytes, "object {i}");
                }
            })
        })
        .collect();
    for w in workers {
        w.join().unwrap();
    }
    assert_eq!(store.list(ObjectKind::DataPack).unwrap().len(), 48);
    clean(&store);
}

#[test]
fn works_inside_tokio_spawn_blocking() {
    let Some(outside) = test_store("tokio") else { return };
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let url = std::env::var("ARCA_TEST_S3").unwrap();
    let prefix = outside.prefix().to_string();
    runtime.block_on(async move {
        // A store opened and used inside spawn_blocking, as the server does.
        let inside = tokio::task::spawn_blocking(move || {
            let config = S3Config::from_url(&url).unwrap();
            let store = S3Store::open(&config).unwrap().with_prefix(&prefix);
            store.put(ObjectKind::Lock, "l1", b"lock").unwrap();
            assert_eq!(store.get(ObjectKind::Lock, "l1").unwrap(), b"lock");
            store
        })
        .await
        .unwrap();
        // A store opened outside any runtime, used from several spawn_blocking threads at once.
        let outside = Arc::new(outside);
        let tasks: Vec<_> = (0..4)
            .map(|i| {
                let store = Arc::clone(&outside);
                tokio::task::spawn_blocking(move || {
                    let n = format!("p{i}");
                    store.put(ObjectKind::Pending, &n, n.as_bytes()).unwrap();
                    assert_eq!(store.get(ObjectKind::Pending, &n).unwrap(), n.as_bytes());
                    assert_eq!(store.get(ObjectKind::Lock, "l1").unwrap(), b"lock");
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
        assert_eq!(outside.list(ObjectKind::Pending).unwrap().len(), 4);
        // Called straight from async code (which should not be done) it blocks but does not
        // panic, and dropping the last handle to a store's runtime inside async code is fine too.
        assert_eq!(inside.stat(ObjectKind::Lock, "l1").unwrap(), Some(4));
        drop(inside);
        clean(&outside);
    });
    // From inside a current-thread runtime's block_on as well.
    let current = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let store = test_store("tokio-current").unwrap();
    current.block_on(async {
        store.put(ObjectKind::Key, "k", b"v").unwrap();
        assert_eq!(store.get(ObjectKind::Key, "k").unwrap(), b"v");
        clean(&store);
    });
}
