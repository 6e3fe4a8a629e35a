//! Encrypted packs at the pack level: what is written, what verification sees with and without
//! an identity, and what damage looks like.

use std::io::{Read, Write};
use std::path::Path;
use std::sync::Arc;

use backup_core::config::Secret;
use backup_core::crypt::{self, Encryption, Keyring};
use backup_core::{BackupKind, Compression, ErrorKind, Pack, PackId, PackReader, StagingPack, Verifier, VerifyLevel};

fn data(n: usize) -> Vec<u8> {
    // Compressible but not trivial: lines with a counter.
    let mut v = Vec::with_capacity(n);
    let mut i = 0u64;
    while v.len() < n {
        v.extend_from_slice(format!("row {i:08} value {}\n", i * 7919 % 1000).as_bytes());
        i += 1;
    }
    v.truncate(n);
    v
}

/// A sealed pack in `dir` with a zstd artifact, a plain artifact and an adopted file.
fn write_pack(dir: &Path, encryption: Option<Encryption>) -> (Pack, Vec<u8>) {
    let pack_dir = dir.join("p1");
    let pack = StagingPack::create(
        &pack_dir,
        "plan",
        PackId::new("p1").unwrap(),
        BackupKind::Full,
        chrono_tz::UTC,
    )
    .unwrap();
    if let Some(e) = encryption {
        pack.set_encryption(e);
    }
    let big = data(3 * 1024 * 1024 + 17);
    let mut w = pack
        .artifact("data/big.bin.zst", "src", "file", Compression::Zstd)
        .unwrap();
    w.write_all(&big).unwrap();
    w.finish().unwrap();
    let mut w = pack.artifact("notes.txt", "src", "file", Compression::None).unwrap();
    w.write_all(b"hello\n").unwrap();
    w.finish().unwrap();
    let adopted = pack.reserve("db/copy.db").unwrap();
    std::fs::write(&adopted, &big[..100_000]).unwrap();
    pack.adopt("db/copy.db", "src", "file", Some(3)).unwrap();
    let sealed = pack.seal().unwrap();
    (Pack::open(sealed.dir()).unwrap(), big)
}

fn read_all(r: &dyn PackReader, path: &str) -> backup_core::Result<Vec<u8>> {
    let e = r.manifest().artifact_named(path).expect("artifact").clone();
    let mut out = Vec::new();
    r.open_artifact(&e)?.read_to_end(&mut out).unwrap();
    Ok(out)
}

fn keys_of(identity: &Secret) -> Arc<Keyring> {
    let mut k = Keyring::new();
    k.add_identities(identity.expose(), "test identity").unwrap();
    Arc::new(k)
}

#[test]
fn every_artifact_is_stored_encrypted_and_reads_back_with_either_identity() {
    let dir = tempfile::tempdir().unwrap();
    let (ops, ops_pub) = crypt::generate();
    let (escrow, escrow_pub) = crypt::generate();
    let enc = Encryption::to_recipients(&[ops_pub.clone(), escrow_pub.clone()]).unwrap();
    let (pack, big) = write_pack(dir.path(), Some(enc));
    let m = pack.manifest();
    assert_eq!(m.format_version, 3);
    let paths: Vec<&str> = m.artifacts.iter().map(|a| a.path.as_str()).collect();
    assert_eq!(paths, ["data/big.bin.zst.age", "db/copy.db.age", "notes.txt.age"]);
    for a in &m.artifacts {
        let rec = a.encryption.as_ref().expect("recorded");
        assert_eq!(rec.recipients, [ops_pub.clone(), escrow_pub.clone()]);
        assert!(!rec.passphrase);
        // The stored bytes are an age file, not the plaintext.
        let stored = std::fs::read(pack.dir().join(&a.path)).unwrap();
        assert!(stored.starts_with(b"age-encryption.org/v1\n"), "{}", a.path);
        assert_eq!(stored.len() as u64, a.size);
    }
    // The plain file the client library wrote is gone; nothing else is in the pack.
    assert!(!pack.dir().join("db/copy.db").exists());
    assert_eq!(m.artifact_named("db/copy.db").unwrap().records, Some(3));

    // Quick verification needs no key; deep does.
    let plain: Arc<dyn PackReader> = pack.clone().into_reader();
    assert!(Verifier::new().verify(&*plain, VerifyLevel::Quick).is_ok());
    let deep = Verifier::new().verify(&*plain, VerifyLevel::Deep);
    assert_eq!(deep.problems.len(), 3, "{deep:?}");
    for p in &deep.problems {
        assert!(p.reason.contains("needs an identity"), "{}", p.reason);
        assert!(
            p.reason.contains(&ops_pub) && p.reason.contains(&escrow_pub),
            "{}",
            p.reason
        );
        assert!(p.reason.contains("[plans.plan.encrypt]"), "{}", p.reason);
    }
    let e = read_all(&*plain, "notes.txt").unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Key);

    for id in [&ops, &escrow] {
        let r = crypt::keyed(pack.clone().into_reader(), Some(keys_of(id)));
        assert!(Verifier::new().verify(&*r, VerifyLevel::Deep).is_ok());
        assert_eq!(read_all(&*r, "data/big.bin.zst").unwrap(), big);
        assert_eq!(read_all(&*r, "notes.txt").unwrap(), b"hello\n");
        assert_eq!(read_all(&*r, "db/copy.db").unwrap(), &big[..100_000]);
    }
}

#[test]
fn a_wrong_identity_is_named_and_the_expected_recipients_too() {
    let dir = tempfile::tempdir().unwrap();
    let (_, ops_pub) = crypt::generate();
    let (wrong, wrong_pub) = crypt::generate();
    let (pack, _) = write_pack(
        dir.path(),
        Some(Encryption::to_recipients(std::slice::from_ref(&ops_pub)).unwrap()),
    );
    let r = crypt::keyed(pack.into_reader(), Some(keys_of(&wrong)));
    let e = read_all(&*r, "notes.txt").unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Key);
    let msg = e.to_string();
    assert!(msg.contains(&format!("is encrypted for {ops_pub}")), "{msg}");
    assert!(msg.contains(&format!("{wrong_pub} from test identity")), "{msg}");
    // The restore check refuses before anything is written, whatever allow_damaged says.
    let wanted: Vec<_> = r.manifest().artifacts.iter().collect();
    let check = Verifier::check_for_restore(&*r, &wanted);
    assert!(check.is_ok());
    let e = check.require(true).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Key);
    // The secret identity never appears in what is shown.
    let secret_line = wrong.expose().lines().last().unwrap().to_string();
    assert!(!msg.contains(&secret_line));
    assert!(!format!("{r:?}").contains(&secret_line));
}

#[test]
fn a_flipped_ciphertext_byte_is_named_by_quick_verify_and_fails_decryption() {
    let dir = tempfile::tempdir().unwrap();
    let (id, public) = crypt::generate();
    let (pack, _) = write_pack(dir.path(), Some(Encryption::to_recipients(&[public]).unwrap()));
    let rel = "data/big.bin.zst.age";
    let path = pack.dir().join(rel);
    let mut bytes = std::fs::read(&path).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x01;
    std::fs::write(&path, &bytes).unwrap();
    let r = crypt::keyed(pack.into_reader(), Some(keys_of(&id)));
    let quick = Verifier::new().verify(&*r, VerifyLevel::Quick);
    assert_eq!(quick.problems.len(), 1, "{quick:?}");
    assert_eq!(quick.problems[0].path, rel);
    assert!(quick.problems[0].reason.contains("sha256 mismatch"), "{quick:?}");
    // Reading it fails at the damaged chunk (age authenticates every 64 KiB chunk).
    let e = r.manifest().artifact(rel).unwrap().clone();
    let mut out = Vec::new();
    let err = r.open_artifact(&e).unwrap().read_to_end(&mut out).unwrap_err();
    assert!(
        out.len() < 3 * 1024 * 1024,
        "damaged plaintext must not be passed on whole"
    );
    let _ = err;
}

#[test]
fn a_passphrase_pack_reads_with_the_passphrase_only() {
    let dir = tempfile::tempdir().unwrap();
    let pass = Secret::new("correct horse battery staple");
    let (pack, big) = write_pack(dir.path(), Some(Encryption::to_passphrase(&pass)));
    let a = pack.manifest().artifact_named("data/big.bin.zst").unwrap().clone();
    let rec = a.encryption.as_ref().unwrap();
    assert!(rec.passphrase && rec.recipients.is_empty());
    let manifest_text = std::fs::read_to_string(pack.dir().join("manifest.json")).unwrap();
    assert!(!manifest_text.contains("horse"));
    let mut k = Keyring::new();
    k.add_passphrase(&pass, "test");
    let r = crypt::keyed(pack.clone().into_reader(), Some(Arc::new(k)));
    assert_eq!(read_all(&*r, "data/big.bin.zst").unwrap(), big);
    let mut wrong = Keyring::new();
    wrong.add_passphrase(&Secret::new("not it"), "test");
    let r = crypt::keyed(pack.into_reader(), Some(Arc::new(wrong)));
    let e = read_all(&*r, "notes.txt").unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Key, "{e}");
    assert!(!e.to_string().contains("not it"), "{e}");
}

#[test]
fn an_unencrypted_pack_keeps_format_version_2_and_needs_no_key() {
    let dir = tempfile::tempdir().unwrap();
    let (pack, big) = write_pack(dir.path(), None);
    assert_eq!(pack.manifest().format_version, 2);
    assert!(!pack.manifest().is_encrypted());
    let r = pack.into_reader();
    assert!(Verifier::new().verify(&*r, VerifyLevel::Deep).is_ok());
    assert_eq!(read_all(&*r, "data/big.bin.zst").unwrap(), big);
}

#[test]
fn unreserve_removes_the_encrypted_file_too() {
    let dir = tempfile::tempdir().unwrap();
    let (_, public) = crypt::generate();
    let pack = StagingPack::create(
        &dir.path().join("p"),
        "plan",
        PackId::new("p").unwrap(),
        BackupKind::Full,
        chrono_tz::UTC,
    )
    .unwrap();
    pack.set_encryption(Encryption::to_recipients(&[public]).unwrap());
    let mut w = pack.artifact("a.bin", "s", "file", Compression::None).unwrap();
    w.write_all(b"x").unwrap();
    w.finish().unwrap();
    assert!(dir.path().join("p/a.bin.age").exists());
    pack.unreserve("a.bin").unwrap();
    assert!(!dir.path().join("p/a.bin.age").exists());
    assert!(pack.artifacts().is_empty());
    let sealed = pack.seal().unwrap();
    assert!(sealed.manifest().artifacts.is_empty());
}
