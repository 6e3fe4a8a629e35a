//! Full backup → restore → identical documents and indexes; independent reader; deep check;
//! chain restore; sampling; conformance kit. Against the real test server.

mod common;

use std::io::Read;
use std::process::Command;
use std::str::FromStr;
use std::sync::Arc;

use backup_core::{BackupKind, Verifier, VerifyLevel};
use common::*;
use mongodb::IndexModel;
use mongodb::bson::spec::BinarySubtype;
use mongodb::bson::{Binary, Bson, Decimal128, Document, doc, oid::ObjectId};
use mongodb::options::IndexOptions;
use source_mongo::restore::{self, Mode, Options};
use source_mongo::{Connection, MongoCheck, MongoSource, Selection, sample};

fn rich_doc(i: i64) -> Document {
    doc! {
        "_id": ObjectId::new(),
        "seq": i,
        "i32": i as i32,
        "i64": Bson::Int64(i * 1_000_000_000_000),
        "dec": Decimal128::from_str(&format!("{i}.0100")).unwrap(),
        "bin": Binary { subtype: BinarySubtype::Generic, bytes: vec![0, 1, 2, (i % 256) as u8] },
        "uuid": Binary { subtype: BinarySubtype::Uuid, bytes: vec![7; 16] },
        "at": bdate(t(i)),
        "nested": {"a": [1, [2, [3, {"deep": [i, "x"]}]], {"k": Bson::Null}], "f": 1.5},
        "ts": Bson::Timestamp(mongodb::bson::Timestamp { time: 1_700_000_000, increment: i as u32 }),
        "re": Bson::RegularExpression(mongodb::bson::Regex { pattern: "^a.*".into(), options: "i".into() }),
        "text": format!("订单 {i} {}", "y".repeat((i % 300) as usize)),
    }
}

async fn seed(db: &mongodb::Database) {
    let c = db.collection::<Document>("scanrecords");
    c.insert_many((0..500).map(rich_doc)).await.unwrap();
    c.create_index(IndexModel::builder().keys(doc! {"at": 1}).build())
        .await
        .unwrap();
    c.create_index(
        IndexModel::builder()
            .keys(doc! {"seq": -1, "i32": 1})
            .options(
                IndexOptions::builder()
                    .unique(true)
                    .name("seq_desc_i32".to_string())
                    .build(),
            )
            .build(),
    )
    .await
    .unwrap();
    db.collection::<Document>("roles")
        .insert_many((0..5).map(|i| doc! {"_id": i, "name": format!("role{i}")}))
        .await
        .unwrap();
}

fn verifier() -> Verifier {
    Verifier::new().with_check(Arc::new(MongoCheck))
}

#[tokio::test]
async fn full_backup_restores_byte_identical_with_indexes() {
    let db = fresh_db("full").await;
    let name = db.name().to_string();
    seed(&db).await;
    let src = MongoSource::new("mes", uri(), &name);
    let mut h = Harness::new();
    let (sealed, report) = h.run(&src, BackupKind::Full, chrono::Utc::now()).await;
    assert!(report.watermarks.is_empty(), "no time field, no watermark");
    let pack = sealed.to_reader();
    assert!(verifier().verify(&pack, VerifyLevel::Deep).is_ok());

    let conn = Connection::open(&uri()).await.unwrap();
    let target = format!("{name}_restored");
    let opts = Options {
        into_db: Some(target.clone()),
        ..Options::default()
    };
    let restored = restore::restore_pack(&conn, &pack, &opts).await.unwrap();
    assert_eq!(restored.len(), 2);
    let tdb = conn.client.database(&target);
    for coll in ["scanrecords", "roles"] {
        let a = live_docs(&db, coll).await;
        let b = live_docs(&tdb, coll).await;
        assert_eq!(a.len(), b.len(), "{coll}");
        assert!(
            a.iter().zip(&b).all(|(x, y)| x.as_bytes() == y.as_bytes()),
            "{coll}: raw BSON differs"
        );
        assert_eq!(
            index_specs(&db, coll).await,
            index_specs(&tdb, coll).await,
            "{coll}: indexes differ"
        );
    }
    // The documents in the pack are the live bytes too.
    let mut in_pack = pack_docs(&pack, &format!("mongo/{name}/scanrecords.bson.zst"));
    in_pack.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
    let live = live_docs(&db, "scanrecords").await;
    assert!(in_pack.iter().zip(&live).all(|(x, y)| x.as_bytes() == y.as_bytes()));

    // Insert mode refuses a non-empty target; replace and upsert are repeatable.
    let e = restore::restore_pack(&conn, &pack, &opts)
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("not empty") && e.contains("--mode replace"), "{e}");
    for mode in [Mode::Replace, Mode::Upsert, Mode::Upsert] {
        let o = Options { mode, ..opts.clone() };
        restore::restore_pack(&conn, &pack, &o).await.unwrap();
        assert_eq!(live_docs(&tdb, "scanrecords").await.len(), 500, "{mode}");
    }
    // One collection, renamed.
    let o = Options {
        collections: vec!["roles".into()],
        rename: [("roles".to_string(), "roles_copy".to_string())].into(),
        ..opts.clone()
    };
    restore::restore_pack(&conn, &pack, &o).await.unwrap();
    assert_eq!(live_docs(&tdb, "roles_copy").await.len(), 5);
    tdb.drop().await.unwrap();
    db.drop().await.unwrap();
}

#[tokio::test]
async fn artifacts_parse_with_an_independent_reader_and_damage_is_found() {
    let db = fresh_db("pyread").await;
    let name = db.name().to_string();
    seed(&db).await;
    let src = MongoSource::new("mes", uri(), &name);
    let mut h = Harness::new();
    let (sealed, _) = h.run(&src, BackupKind::Full, chrono::Utc::now()).await;
    let pack = sealed.to_pack();
    let rel = format!("mongo/{name}/scanrecords.bson.zst");
    let entry = pack.manifest().artifact(&rel).unwrap().clone();
    let mut raw = Vec::new();
    pack.open_artifact(&entry).unwrap().read_to_end(&mut raw).unwrap();
    let plain = h.dir.path().join("scanrecords.bson");
    std::fs::write(&plain, &raw).unwrap();

    // pymongo's bson: a plain stream of BSON documents, re-encoded byte-identically.
    let script = "import sys, bson\n\
                  data = open(sys.argv[1], 'rb').read()\n\
                  docs = bson.decode_all(data, bson.CodecOptions(document_class=bson.SON))\n\
                  again = b''.join(bson.encode(d) for d in docs)\n\
                  print(len(docs), again == data, sum(1 for d in docs if isinstance(d['dec'], bson.Decimal128)))\n";
    let out = Command::new(env_path("PACKRAT_TEST_MONGO_PYTHON"))
        .args(["-c", script])
        .arg(&plain)
        .output()
        .expect("run python");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "python failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(stdout.trim(), "500 True 500");

    // The metadata is mongodump's shape.
    let meta_rel = format!("mongo/{name}/scanrecords.metadata.json");
    let meta: serde_json::Value = serde_json::from_slice(&std::fs::read(pack.dir().join(&meta_rel)).unwrap()).unwrap();
    assert_eq!(meta["collectionName"], "scanrecords");
    assert_eq!(meta["type"], "collection");
    assert_eq!(meta["indexes"].as_array().unwrap().len(), 3);

    // A damaged document inside an intact zstd stream is found by the deep check.
    let mut bad = raw.clone();
    bad[raw.len() / 2] ^= 0xff;
    let damaged_dir = h.dir.path().join("damaged").join(pack.id());
    copy_dir(pack.dir(), &damaged_dir);
    let mut enc = zstd_encode(&bad);
    std::fs::write(damaged_dir.join(&rel), &mut enc).unwrap();
    let dp = backup_core::Pack::open(&damaged_dir).unwrap();
    let check = backup_core::DeepCheck::check(&MongoCheck, &dp, &entry);
    assert!(check.is_err(), "damage undetected");
    db.drop().await.unwrap();
}

fn zstd_encode(b: &[u8]) -> Vec<u8> {
    let out = Command::new("zstd")
        .args(["-q", "-c", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn();
    let mut child = out.expect("zstd CLI (cargo xtask ci installs it)");
    use std::io::Write;
    child.stdin.take().unwrap().write_all(b).unwrap();
    child.wait_with_output().unwrap().stdout
}

fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap().flatten() {
        let dest = to.join(e.file_name());
        if e.path().is_dir() {
            copy_dir(&e.path(), &dest);
        } else {
            std::fs::copy(e.path(), dest).unwrap();
        }
    }
}

#[tokio::test]
async fn chain_restore_of_full_and_incrementals_is_idempotent() {
    let db = fresh_db("chain").await;
    let name = db.name().to_string();
    let c = db.collection::<Document>("config");
    c.create_index(IndexModel::builder().keys(doc! {"createdAt": 1}).build())
        .await
        .unwrap();
    insert_at(&db, "config", &(0..10).map(|i| (i, t(i))).collect::<Vec<_>>()).await;
    let mut sel = Selection::collections(["config"], Some("createdAt"));
    sel.first_run = source_mongo::FirstRun::All;
    let src = MongoSource::new("mes", uri(), &name).with_selection(sel);
    let mut h = Harness::new();
    let (p1, _) = h.run(&src, BackupKind::Full, t(20)).await;
    insert_at(&db, "config", &(10..20).map(|i| (i, t(i + 20))).collect::<Vec<_>>()).await;
    // An update: the document gets a new time, so the next window carries its new version.
    c.update_one(
        doc! {"_id": 3_i64},
        doc! {"$set": {"n": 333, "createdAt": bdate(t(45))}},
    )
    .await
    .unwrap();
    let (p2, _) = h.run(&src, BackupKind::Incremental, t(50)).await;
    insert_at(&db, "config", &(20..25).map(|i| (i, t(i + 40))).collect::<Vec<_>>()).await;
    let (p3, _) = h.run(&src, BackupKind::Incremental, t(70)).await;

    let packs = restore::chain(vec![p3.to_reader(), p1.to_reader(), p2.to_reader()]);
    let order: Vec<_> = packs.iter().map(|p| p.manifest().kind).collect();
    assert_eq!(
        order,
        [BackupKind::Full, BackupKind::Incremental, BackupKind::Incremental]
    );
    let conn = Connection::open(&uri()).await.unwrap();
    let target = format!("{name}_chain");
    let opts = Options {
        mode: Mode::Replace,
        into_db: Some(target.clone()),
        ..Options::default()
    };
    for _ in 0..2 {
        restore::restore_chain(&conn, &packs, &opts).await.unwrap();
        let a = live_docs(&db, "config").await;
        let b = live_docs(&conn.client.database(&target), "config").await;
        assert_eq!(a.len(), 25);
        assert!(
            a.iter().zip(&b).all(|(x, y)| x.as_bytes() == y.as_bytes()),
            "chain result differs from the source"
        );
    }
    // Sampling: all identical; then a change without a new time is found, one with a new time is not.
    let items = restore::collections(&p1.to_pack(), None);
    let r = sample::sample(&conn, &p1.to_reader(), &items[0], 5, None)
        .await
        .unwrap();
    assert_eq!(r.sampled, 5);
    assert!(r.is_ok(), "{r:?}");
    c.update_many(doc! {}, doc! {"$set": {"pad": "changed"}}).await.unwrap();
    let r = sample::sample(&conn, &p1.to_reader(), &items[0], 5, None)
        .await
        .unwrap();
    assert_eq!(r.differing.len() + r.updated_since, 5, "{r:?}");
    assert!(!r.is_ok());
    conn.client.database(&target).drop().await.unwrap();
    db.drop().await.unwrap();
}

#[tokio::test]
async fn conforms_to_the_source_kit() {
    let db = fresh_db("conform").await;
    let name = db.name().to_string();
    seed(&db).await;
    let src = MongoSource::new("mes", uri(), &name);
    backup_core::conformance::check_source(&src, &verifier()).await;
    db.drop().await.unwrap();
}

#[tokio::test]
async fn a_damaged_pack_is_refused_before_anything_is_written_unless_allow_damaged() {
    let db = fresh_db("damaged").await;
    let name = db.name().to_string();
    seed(&db).await;
    let src = MongoSource::new("mes", uri(), &name);
    let mut h = Harness::new();
    let (sealed, _) = h.run(&src, BackupKind::Full, chrono::Utc::now()).await;
    let pack = sealed.to_reader();
    let roles = format!("mongo/{name}/roles.bson.zst");
    let path = sealed.dir().join(&roles);
    let mut bytes = std::fs::read(&path).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x40;
    std::fs::write(&path, &bytes).unwrap();

    let conn = Connection::open(&uri()).await.unwrap();
    let target = format!("{name}_restored");
    let opts = Options {
        into_db: Some(target.clone()),
        ..Options::default()
    };
    let e = restore::restore_pack(&conn, &pack, &opts)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.contains(&format!("{roles}: sha256 mismatch")) && e.contains("nothing was restored"),
        "{e}"
    );
    let tdb = conn.client.database(&target);
    assert!(
        tdb.list_collection_names().await.unwrap().is_empty(),
        "nothing may be created on the target"
    );

    // The intact collection on request; the damaged one is skipped and said so.
    let o = Options {
        allow_damaged: true,
        ..opts.clone()
    };
    let checked = restore::prepare(std::slice::from_ref(&pack), &o).await.unwrap();
    assert_eq!(checked[0].skipped.len(), 1, "{:?}", checked[0].skipped);
    assert_eq!(checked[0].skipped[0].collection, "roles");
    assert!(checked[0].skipped[0].reason.contains("sha256 mismatch"));
    let restored = restore::restore_checked(&conn, &checked, &o).await.unwrap();
    assert_eq!(restored.len(), 1);
    assert_eq!(restored[0].collection, "scanrecords");
    assert_eq!(tdb.list_collection_names().await.unwrap(), ["scanrecords"]);
    assert_eq!(live_docs(&tdb, "scanrecords").await.len(), 500);

    // Only the damaged collection asked for: nothing to restore, even with the flag.
    let o = Options {
        collections: vec!["roles".into()],
        mode: Mode::Replace,
        ..o
    };
    let e = restore::restore_pack(&conn, &pack, &o).await.unwrap_err().to_string();
    assert!(e.contains("nothing to restore") && e.contains(&roles), "{e}");
    tdb.drop().await.unwrap();
    db.drop().await.unwrap();
}
