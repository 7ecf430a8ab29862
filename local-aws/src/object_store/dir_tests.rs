use super::*;

fn store() -> (tempfile::TempDir, DirStore) {
    let dir = tempfile::tempdir().unwrap();
    let store = DirStore::open(dir.path()).unwrap();
    store.create_bucket("frames").unwrap();
    (dir, store)
}

fn info(key: &str) -> ObjectInfo {
    ObjectInfo {
        key: key.into(),
        size: 1,
        last_modified: SystemTime::UNIX_EPOCH,
    }
}

fn keys(p: &ListPage) -> Vec<&str> {
    p.objects.iter().map(|o| o.key.as_str()).collect()
}

#[test]
fn objects_are_plain_files_under_bucket_and_key() {
    let (dir, store) = store();
    store
        .put("frames", "events/pi/a.jpg", b"jpeg", PutMode::Overwrite)
        .unwrap();
    assert_eq!(
        std::fs::read(dir.path().join("frames/events/pi/a.jpg")).unwrap(),
        b"jpeg"
    );
    let (bytes, info) = store.get("frames", "events/pi/a.jpg").unwrap();
    assert_eq!((bytes.as_slice(), info.size), (b"jpeg".as_slice(), 4));
    assert!(
        std::fs::read_dir(dir.path().join(".tmp"))
            .unwrap()
            .next()
            .is_none(),
        "no upload left behind"
    );
}

#[test]
fn if_absent_refuses_an_existing_key_and_keeps_the_first_object() {
    let (_dir, store) = store();
    store
        .put("frames", "k", b"first", PutMode::IfAbsent)
        .unwrap();
    let err = store
        .put("frames", "k", b"second", PutMode::IfAbsent)
        .unwrap_err();
    assert!(matches!(err, StoreError::AlreadyExists { .. }), "{err}");
    assert_eq!(store.get("frames", "k").unwrap().0, b"first");
    store
        .put("frames", "k", b"third", PutMode::Overwrite)
        .unwrap();
    assert_eq!(store.get("frames", "k").unwrap().0, b"third");
}

#[test]
fn keys_a_directory_cannot_hold_are_refused_with_a_reason() {
    let (_dir, store) = store();
    for key in ["", "a//b", "/a", "a/", "a/../b", "./a"] {
        let err = store
            .put("frames", key, b"x", PutMode::Overwrite)
            .unwrap_err();
        assert!(
            matches!(err, StoreError::InvalidKey { .. }),
            "{key:?}: {err}"
        );
    }
    store
        .put("frames", "a/b", b"x", PutMode::Overwrite)
        .unwrap();
    let err = store
        .put("frames", "a", b"x", PutMode::Overwrite)
        .unwrap_err();
    assert!(matches!(err, StoreError::KeyConflict { .. }), "{err}");
    let err = store
        .put("frames", "a/b/c", b"x", PutMode::Overwrite)
        .unwrap_err();
    assert!(matches!(err, StoreError::KeyConflict { .. }), "{err}");
    for bucket in ["Frames", "ab", ".tmp", "a..b", "-ab"] {
        assert!(
            store.put(bucket, "k", b"x", PutMode::Overwrite).is_err(),
            "{bucket}"
        );
    }
}

#[test]
fn missing_buckets_and_keys_are_told_apart() {
    let (_dir, store) = store();
    assert!(matches!(
        store.get("nope", "k").unwrap_err(),
        StoreError::NoSuchBucket(_)
    ));
    assert!(matches!(
        store.get("frames", "k").unwrap_err(),
        StoreError::NoSuchKey { .. }
    ));
    assert!(matches!(
        store
            .put("nope", "k", b"x", PutMode::Overwrite)
            .unwrap_err(),
        StoreError::NoSuchBucket(_)
    ));
    assert!(matches!(
        store.create_bucket("frames").unwrap_err(),
        StoreError::BucketExists(_)
    ));
}

#[test]
fn deleting_prunes_empty_directories_and_is_idempotent() {
    let (dir, store) = store();
    store
        .put("frames", "x/y/z.json", b"{}", PutMode::Overwrite)
        .unwrap();
    store.delete("frames", "x/y/z.json").unwrap();
    store.delete("frames", "x/y/z.json").unwrap();
    assert!(!dir.path().join("frames/x").exists());
    assert!(dir.path().join("frames").is_dir());
    assert!(matches!(
        store.delete_bucket("nope").unwrap_err(),
        StoreError::NoSuchBucket(_)
    ));
    store.put("frames", "k", b"x", PutMode::Overwrite).unwrap();
    assert!(matches!(
        store.delete_bucket("frames").unwrap_err(),
        StoreError::BucketNotEmpty(_)
    ));
}

#[test]
fn listing_is_in_key_order_across_directories() {
    let (_dir, store) = store();
    // Directory order would give a/b before a-c; S3 key order is the reverse.
    for k in ["a/b", "a-c", "b", "a/a/x"] {
        store.put("frames", k, b"x", PutMode::Overwrite).unwrap();
    }
    let all = store
        .list(
            "frames",
            &ListRequest {
                max_keys: 1000,
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!(keys(&all), ["a-c", "a/a/x", "a/b", "b"]);
    let under_a = store
        .list(
            "frames",
            &ListRequest {
                prefix: "a/".into(),
                max_keys: 1000,
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!(keys(&under_a), ["a/a/x", "a/b"]);
}

#[test]
fn pages_continue_after_the_last_entry_returned() {
    let sorted: Vec<_> = ["a", "b", "c", "d", "e"].into_iter().map(info).collect();
    let mut req = ListRequest {
        max_keys: 2,
        ..Default::default()
    };
    let mut seen = Vec::new();
    loop {
        let p = page(sorted.clone(), &req);
        seen.extend(keys(&p).into_iter().map(str::to_owned));
        match p.next {
            Some(next) => req.after = Some(next),
            None => break,
        }
    }
    assert_eq!(seen, ["a", "b", "c", "d", "e"]);
}

#[test]
fn a_delimiter_groups_keys_into_common_prefixes() {
    let sorted: Vec<_> = ["f/2024/a", "f/2024/b", "f/2025/c", "f/x.json"]
        .into_iter()
        .map(info)
        .collect();
    let req = ListRequest {
        prefix: "f/".into(),
        delimiter: Some("/".into()),
        max_keys: 1000,
        after: None,
    };
    let p = page(sorted.clone(), &req);
    assert_eq!(p.common_prefixes, ["f/2024/", "f/2025/"]);
    assert_eq!(keys(&p), ["f/x.json"]);
    let first = page(
        sorted.clone(),
        &ListRequest {
            max_keys: 1,
            ..req.clone()
        },
    );
    assert_eq!(
        (first.common_prefixes.clone(), first.next.clone()),
        (vec!["f/2024/".to_owned()], Some("f/2024/".to_owned()))
    );
    let second = page(
        sorted,
        &ListRequest {
            after: first.next,
            ..req
        },
    );
    assert_eq!(second.common_prefixes, ["f/2025/"]);
}

#[test]
fn unfinished_uploads_are_removed_when_the_store_opens() {
    let dir = tempfile::tempdir().unwrap();
    let store = DirStore::open(dir.path()).unwrap();
    let tmp = store.temp_object().unwrap();
    std::mem::forget(tmp);
    assert_eq!(
        std::fs::read_dir(dir.path().join(".tmp")).unwrap().count(),
        1
    );
    DirStore::open(dir.path()).unwrap();
    assert_eq!(
        std::fs::read_dir(dir.path().join(".tmp")).unwrap().count(),
        0
    );
}

#[test]
fn concurrent_puts_and_deletes_under_new_prefixes_all_succeed() {
    // Several writers create the same new directories at once, and deleters prune
    // them at once: neither may see the other's directory as an object in the way,
    // nor fail on a directory pruned under it. Many rounds, to meet the races.
    let (_dir, store) = store();
    for round in 0..50 {
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let store = store.clone();
                std::thread::spawn(move || {
                    let key = format!("staging/r{round}/deep/chunk-{t}");
                    store
                        .put("frames", &key, b"chunk", PutMode::IfAbsent)
                        .unwrap();
                    store.delete("frames", &key).unwrap();
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
    }
    let page = store.list("frames", &ListRequest::default()).unwrap();
    assert!(page.objects.is_empty(), "{:?}", keys(&page));
}
