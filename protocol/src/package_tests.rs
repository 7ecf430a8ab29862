//! Package format, signatures and anti-rollback, each refusal by the reason a device
//! reports.

use super::*;

fn manifest(version: &str) -> PackageManifest {
    PackageManifest {
        format: PACKAGE_FORMAT,
        name: "dogs".into(),
        version: version.into(),
        parent_version: Some("1.0.0".into()),
        created: "2026-11-29T10:00:00Z".into(),
        not_before: None,
        expires: None,
        rollback_of: None,
        model_manifest: "model.toml".into(),
        files: vec![],
    }
}

fn files() -> Vec<(String, Vec<u8>)> {
    vec![
        ("model.toml".into(), b"format = 1\n".to_vec()),
        ("model.tflite".into(), vec![7u8; 3000]),
        ("labels.txt".into(), b"a\nb\n".to_vec()),
    ]
}

fn v(s: &str) -> semver::Version {
    semver::Version::parse(s).unwrap()
}

#[test]
fn a_built_package_reads_back_with_every_file_in_order() {
    let tar = build(manifest("1.0.1"), &files()).unwrap();
    let read = parse(&tar, 1 << 20).unwrap();
    assert_eq!(read.manifest.version, "1.0.1");
    assert_eq!(read.files, files());
    assert_eq!(read.manifest.files[1].size, 3000);
    // The same inputs give the same bytes (no mtime, owner or order drift).
    assert_eq!(tar, build(manifest("1.0.1"), &files()).unwrap());
}

#[test]
fn a_package_over_the_size_limit_is_refused_before_it_is_read() {
    let tar = build(manifest("1.0.1"), &files()).unwrap();
    let err = parse(&tar, 1000).unwrap_err();
    assert!(
        matches!(err, PackageError::TooLarge { limit: 1000, .. }),
        "{err}"
    );
}

#[test]
fn a_file_whose_bytes_differ_from_the_manifest_is_refused_by_name() {
    let tar = build(manifest("1.0.1"), &files()).unwrap();
    // Flip one byte of model.tflite's contents (all 7s) inside the tar.
    let at = tar.windows(16).position(|w| w == [7u8; 16]).unwrap();
    let mut bad = tar.clone();
    bad[at + 5] ^= 1;
    let err = parse(&bad, 1 << 20).unwrap_err();
    match err {
        PackageError::File { path, problem } => {
            assert_eq!(path, "model.tflite");
            assert!(problem.contains("sha256"), "{problem}");
        }
        other => panic!("{other}"),
    }
}

fn raw_tar(entries: &[(&str, tar::EntryType, &[u8])]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (name, kind, bytes) in entries {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(*kind);
        h.set_size(bytes.len() as u64);
        h.set_mode(0o644);
        if *kind == tar::EntryType::Symlink {
            h.set_size(0);
            h.set_link_name("/etc/passwd").unwrap();
            h.set_path(name).unwrap();
            h.set_cksum();
            b.append(&h, &[][..]).unwrap();
        } else {
            // `append_data` would refuse `..` itself; write the name raw.
            let field = &mut h.as_old_mut().name;
            field[..name.len()].copy_from_slice(name.as_bytes());
            h.set_cksum();
            b.append(&h, *bytes).unwrap();
        }
    }
    b.into_inner().unwrap()
}

#[test]
fn entries_that_could_write_outside_the_package_are_refused() {
    let m = {
        let mut m = manifest("1.0.1");
        m.files = vec![PackageFile {
            path: "model.toml".into(),
            size: 1,
            sha256: sha256_hex(b"x"),
        }];
        m.to_toml()
    };
    let cases: Vec<(&str, tar::EntryType)> = vec![
        ("../model.toml", tar::EntryType::Regular),
        ("/tmp/model.toml", tar::EntryType::Regular),
        ("sub/model.toml", tar::EntryType::Regular),
        ("model.toml", tar::EntryType::Symlink),
        ("model.toml", tar::EntryType::Link),
    ];
    for (name, kind) in cases {
        let tar = raw_tar(&[
            (PACKAGE_MANIFEST, tar::EntryType::Regular, m.as_bytes()),
            (name, kind, b"x"),
        ]);
        let err = parse(&tar, 1 << 20).unwrap_err();
        assert!(
            matches!(err, PackageError::Entry { .. }),
            "{name} {kind:?}: {err}"
        );
    }
}

#[test]
fn the_manifest_must_come_first_and_list_every_file() {
    let tar = raw_tar(&[("model.toml", tar::EntryType::Regular, b"x")]);
    assert!(matches!(
        parse(&tar, 1 << 20).unwrap_err(),
        PackageError::ManifestNotFirst(_)
    ));
    let mut m = manifest("1.0.1");
    m.files = vec![PackageFile {
        path: "model.toml".into(),
        size: 1,
        sha256: sha256_hex(b"x"),
    }];
    let text = m.to_toml();
    let extra = raw_tar(&[
        (PACKAGE_MANIFEST, tar::EntryType::Regular, text.as_bytes()),
        ("model.toml", tar::EntryType::Regular, b"x"),
        ("extra.bin", tar::EntryType::Regular, b"y"),
    ]);
    let err = parse(&extra, 1 << 20).unwrap_err();
    assert!(err.to_string().contains("not listed"), "{err}");
    let missing = raw_tar(&[(PACKAGE_MANIFEST, tar::EntryType::Regular, text.as_bytes())]);
    let err = parse(&missing, 1 << 20).unwrap_err();
    assert!(err.to_string().contains("not in the package"), "{err}");
}

#[test]
fn versions_must_be_semantic_versions() {
    let err = build(manifest("2.9"), &files()).unwrap_err();
    assert!(err.to_string().contains("not a semantic version"), "{err}");
}

#[test]
fn anti_rollback_admits_only_newer_versions_or_a_rollback_naming_the_highest() {
    let highest = v("1.2.0");
    assert_eq!(
        admit(&manifest("1.2.1"), Some(&highest)).unwrap(),
        Admission::Upgrade
    );
    assert_eq!(admit(&manifest("0.1.0"), None).unwrap(), Admission::Upgrade);
    for older in ["1.2.0", "1.1.0"] {
        let err = admit(&manifest(older), Some(&highest)).unwrap_err();
        assert!(matches!(err, PackageError::NotNewer { .. }), "{err}");
    }
    let mut rollback = manifest("1.1.0");
    rollback.rollback_of = Some("1.2.0".into());
    assert_eq!(
        admit(&rollback, Some(&highest)).unwrap(),
        Admission::Rollback
    );
    // A rollback of another version does not unlock anything.
    rollback.rollback_of = Some("1.3.0".into());
    assert!(admit(&rollback, Some(&highest)).is_err());
}

#[test]
fn a_package_is_refused_outside_its_validity_window() {
    let mut m = manifest("1.0.1");
    m.not_before = Some("2026-12-01T00:00:00Z".into());
    m.expires = Some("2027-01-01T00:00:00Z".into());
    let at = |s: &str| parse_rfc3339_utc(s).unwrap();
    assert!(matches!(
        m.check_validity(at("2026-11-30T23:59:59Z")),
        Err(PackageError::NotYetValid { .. })
    ));
    m.check_validity(at("2026-12-15T00:00:00Z")).unwrap();
    assert!(matches!(
        m.check_validity(at("2027-01-01T00:00:00Z")),
        Err(PackageError::Expired { .. })
    ));
}

#[test]
fn a_signature_verifies_with_its_key_and_fails_on_a_flipped_byte_or_another_key() {
    let keys = generate_keypair("test key").unwrap();
    let other = generate_keypair("other").unwrap();
    let trusted = [TrustedKey::parse(&keys.public).unwrap()];
    let tar = build(manifest("1.0.1"), &files()).unwrap();
    let sig = sign(
        &keys.secret,
        None,
        &tar,
        &manifest("1.0.1").trusted_comment(),
    )
    .unwrap();
    assert_eq!(verify(&tar, &sig, &trusted).unwrap().key_id, keys.key_id);
    assert_eq!(
        trusted_comment(&sig).unwrap(),
        "edge-a2i package dogs 1.0.1"
    );

    let mut flipped = tar.clone();
    let last = flipped.len() - 1;
    flipped[last] ^= 0x01;
    assert!(matches!(
        verify(&flipped, &sig, &trusted).unwrap_err(),
        PackageError::BadSignature { .. }
    ));

    let by_other = sign(&other.secret, None, &tar, "x").unwrap();
    let err = verify(&tar, &by_other, &trusted).unwrap_err();
    match &err {
        PackageError::UnknownKey { key_id, trusted } => {
            assert_eq!(key_id, &other.key_id);
            assert!(trusted.contains(&keys.key_id));
        }
        e => panic!("{e}"),
    }
    assert!(matches!(
        verify(&tar, "not a signature", &trusted).unwrap_err(),
        PackageError::SignatureSyntax(_)
    ));
}

#[test]
fn a_public_key_file_and_its_bare_line_both_parse() {
    let keys = generate_keypair("k").unwrap();
    let line = keys.public.lines().nth(1).unwrap();
    assert_eq!(TrustedKey::parse(line).unwrap().key_id, keys.key_id);
    assert_eq!(TrustedKey::parse(&keys.public).unwrap().key_id, keys.key_id);
    assert!(TrustedKey::parse("RWQ garbage").is_err());
}
