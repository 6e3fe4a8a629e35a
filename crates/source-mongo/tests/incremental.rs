//! Incremental backups by time field and watermark, against the real test server.

mod common;

use backup_core::BackupKind;
use common::*;
use mongodb::bson::{Document, doc};
use source_mongo::FirstRun;
use source_mongo::{MongoSource, Selection};

fn source(db: &str, colls: &[&str]) -> MongoSource {
    let mut sel = Selection::collections(colls.iter().copied(), Some("createdAt"));
    sel.first_run = FirstRun::All;
    sel.lag = std::time::Duration::from_secs(60);
    MongoSource::new("mes", uri(), db)
        .with_selection(sel)
        .with_parallelism(2)
}

async fn index(db: &mongodb::Database, coll: &str) {
    db.collection::<Document>(coll)
        .create_index(mongodb::IndexModel::builder().keys(doc! {"createdAt": 1}).build())
        .await
        .unwrap();
}

#[tokio::test]
async fn three_runs_union_equals_collection_without_duplicates() {
    let db = fresh_db("incr3").await;
    let name = db.name().to_string();
    index(&db, "api_logs").await;
    index(&db, "scanrecords").await;
    let src = source(&name, &["api_logs", "scanrecords"]);
    let mut h = Harness::new();

    insert_at(&db, "api_logs", &(0..50).map(|i| (i, t(i))).collect::<Vec<_>>()).await;
    insert_at(&db, "scanrecords", &(0..5).map(|i| (i, t(i * 10))).collect::<Vec<_>>()).await;
    let (p1, r1) = h.run(&src, BackupKind::Incremental, t(50)).await;
    assert!(r1.warnings.is_empty(), "{:?}", r1.warnings);
    assert_eq!(r1.watermarks.len(), 2);
    insert_at(&db, "api_logs", &(50..120).map(|i| (i, t(i))).collect::<Vec<_>>()).await;
    let (p2, _) = h.run(&src, BackupKind::Incremental, t(121)).await;
    insert_at(&db, "api_logs", &(120..200).map(|i| (i, t(i))).collect::<Vec<_>>()).await;
    let (p3, _) = h.run(&src, BackupKind::Incremental, t(300)).await;

    let rel = format!("mongo/{name}/api_logs.bson.zst");
    let mut all = Vec::new();
    for p in [&p1, &p2, &p3] {
        all.extend(ids(&pack_docs(&p.to_pack(), &rel)));
    }
    let missing: Vec<i64> = (0..200).filter(|i| !all.contains(i)).collect();
    assert_eq!(all.len(), 200, "every document exactly once; missing {missing:?}");
    assert_eq!(set(&all), set(&(0..200).collect::<Vec<_>>()));

    // Windows are contiguous: [all, 49m) [49m, 120m) [120m, 299m). Later inserts carry later
    // times, as in real life.
    let w: Vec<_> = [&p1, &p2, &p3]
        .iter()
        .map(|p| p.manifest().artifact(&rel).unwrap().window.clone().unwrap())
        .collect();
    assert_eq!(w[0].from, None);
    assert_eq!(w[0].to, t(49));
    assert_eq!(w[1].from, Some(t(49)));
    assert_eq!(w[2].from, Some(t(120)));
    assert_eq!(w[2].to, t(299));
    assert_eq!(w[0].field, "createdAt");
    let entry = p1.manifest().artifact(&rel).unwrap();
    assert_eq!(entry.meta["mode"], "incremental");
    assert_eq!(entry.meta["without_time_field"], 0);
    assert!(
        p1.manifest()
            .artifact(&format!("mongo/{name}/api_logs.metadata.json"))
            .is_some()
    );
    assert_eq!(
        h.state.watermark("hot", "mes", &format!("{name}.api_logs")).unwrap(),
        Some(t(299))
    );
    db.drop().await.unwrap();
}

#[tokio::test]
async fn downtime_gap_is_covered_by_the_next_run() {
    let db = fresh_db("gap").await;
    let name = db.name().to_string();
    index(&db, "c").await;
    let src = source(&name, &["c"]);
    let mut h = Harness::new();
    insert_at(&db, "c", &[(1, t(10)), (2, t(50))]).await;
    let (_, _) = h.run(&src, BackupKind::Incremental, t(61)).await; // window up to t(60)
    // Three days of downtime, with writes all through it.
    let gap: Vec<(i64, _)> = (0..72).map(|h| (100 + h, t(60 + h * 60))).collect();
    insert_at(&db, "c", &gap).await;
    let (p, _) = h.run(&src, BackupKind::Incremental, t(60 + 72 * 60 + 1)).await;
    let rel = format!("mongo/{name}/c.bson.zst");
    let got = ids(&pack_docs(&p.to_pack(), &rel));
    assert_eq!(
        set(&got),
        set(&(100..172).collect::<Vec<_>>()),
        "the whole gap, nothing twice"
    );
    let w = p.manifest().artifact(&rel).unwrap().window.clone().unwrap();
    assert_eq!(w.from, Some(t(60)));
    db.drop().await.unwrap();
}

#[tokio::test]
async fn document_inside_the_lag_window_is_picked_up_next_run() {
    let db = fresh_db("lag").await;
    let name = db.name().to_string();
    index(&db, "c").await;
    let src = source(&name, &["c"]);
    let mut h = Harness::new();
    let start = t(100);
    // 30 s before the job starts: inside the 1-minute lag, a late writer's time.
    let late = start - chrono::Duration::seconds(30);
    insert_at(&db, "c", &[(1, t(10)), (2, late)]).await;
    let (p1, _) = h.run(&src, BackupKind::Incremental, start).await;
    let rel = format!("mongo/{name}/c.bson.zst");
    assert_eq!(ids(&pack_docs(&p1.to_pack(), &rel)), [1]);
    let (p2, _) = h.run(&src, BackupKind::Incremental, t(200)).await;
    assert_eq!(ids(&pack_docs(&p2.to_pack(), &rel)), [2]);
    db.drop().await.unwrap();
}

#[tokio::test]
async fn missing_time_field_unindexed_field_and_missing_collection_are_reported() {
    let db = fresh_db("report").await;
    let name = db.name().to_string();
    insert_at(&db, "noindex", &[(1, t(1))]).await;
    db.collection::<Document>("noindex")
        .insert_many([
            doc! {"_id": 2_i64, "n": 2},
            doc! {"_id": 3_i64, "createdAt": "yesterday"},
        ])
        .await
        .unwrap();
    let src = source(&name, &["noindex"]);
    let mut h = Harness::new();
    let (p, r) = h.run(&src, BackupKind::Incremental, t(100)).await;
    let all = r.warnings.join("\n");
    assert!(
        all.contains("not indexed") && all.contains("createIndex({createdAt: 1})"),
        "{all}"
    );
    assert!(
        all.contains("2 document(s) lack a date in time field `createdAt`"),
        "{all}"
    );
    let rel = format!("mongo/{name}/noindex.bson.zst");
    assert_eq!(p.manifest().artifact(&rel).unwrap().meta["without_time_field"], 2);

    // A full run includes them, and counts them.
    let (pf, rf) = h.run(&src, BackupKind::Full, t(101)).await;
    assert_eq!(set(&ids(&pack_docs(&pf.to_pack(), &rel))), set(&[1, 2, 3]));
    assert!(
        rf.warnings.iter().any(|w| w.contains("included in this full backup")),
        "{:?}",
        rf.warnings
    );
    assert_eq!(rf.watermarks.len(), 1, "a full run moves incremental runs on");

    // A plain name that does not exist fails, naming it.
    let bad = source(&name, &["noindex", "nosuchcollection"]);
    let ctx = h.ctx(BackupKind::Incremental, t(200));
    let pack = backup_core::StagingPack::create(
        &h.dir.path().join("bad"),
        "hot",
        backup_core::PackId::new("bad_20260101_000000").unwrap(),
        BackupKind::Incremental,
        chrono_tz::UTC,
    )
    .unwrap();
    let e = backup_core::Source::backup(&bad, &ctx, &pack)
        .await
        .unwrap_err()
        .chain();
    assert!(
        e.contains("source `mes`") && e.contains("collection `nosuchcollection` not found"),
        "{e}"
    );
    db.drop().await.unwrap();
}
