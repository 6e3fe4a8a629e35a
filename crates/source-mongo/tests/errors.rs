//! Failures name the collection and the cause, and never show the password.

mod common;

use backup_core::{BackupKind, PackId, Source, StagingPack};
use common::*;
use source_mongo::{Cause, MongoSource};

async fn attempt(src: &MongoSource) -> backup_core::Error {
    let h = Harness::new();
    let ctx = h.ctx(BackupKind::Full, chrono::Utc::now());
    let pack = StagingPack::create(
        &h.dir.path().join("p"),
        "hot",
        PackId::new("p_20260101_000000").unwrap(),
        BackupKind::Full,
        chrono_tz::UTC,
    )
    .unwrap();
    src.backup(&ctx, &pack).await.unwrap_err()
}

fn password_of(uri: &str) -> String {
    let rest = uri.split_once("://").unwrap().1;
    let userinfo = rest.rsplit_once('@').unwrap().0;
    userinfo.split_once(':').unwrap().1.to_string()
}

#[tokio::test]
async fn wrong_password_is_an_auth_error_without_the_secret() {
    let good = uri();
    let pw = password_of(good.expose());
    let wrong_pw = format!("{pw}-wrong-Zq9");
    let wrong = good.expose().replacen(&format!(":{pw}@"), &format!(":{wrong_pw}@"), 1);
    let src = MongoSource::new("mes", backup_core::config::Secret::new(wrong.clone()), "mes");
    let e = attempt(&src).await;
    let msg = e.chain();
    assert!(msg.contains("authentication failed"), "{msg}");
    assert!(msg.contains("check the user name, password and authSource"), "{msg}");
    assert!(
        !msg.contains(&wrong_pw) && !msg.contains("Zq9") && !msg.contains(&pw),
        "secret leaked: {msg}"
    );
    assert!(!format!("{e:?}").contains("Zq9"), "secret leaked in Debug");
    let inner = match &e {
        backup_core::Error::Source { source, .. } => {
            source.downcast_ref::<source_mongo::Error>().and_then(|e| e.cause())
        }
        _ => None,
    };
    assert_eq!(inner, Some(Cause::AuthFailed));
}

#[tokio::test]
async fn unreachable_server_is_named() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let uri = format!("mongodb://u:Secr3tPw@127.0.0.1:{port}/?serverSelectionTimeoutMS=1500");
    let src = MongoSource::new("mes", backup_core::config::Secret::new(uri), "mes");
    let msg = attempt(&src).await.chain();
    assert!(
        msg.contains("server unreachable") && msg.contains("listing the collections of database mes"),
        "{msg}"
    );
    assert!(!msg.contains("Secr3tPw"), "{msg}");
}
