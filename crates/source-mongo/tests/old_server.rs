//! A server older than the driver supports (MongoDB 4.0, wire version 7) is refused with a
//! message naming the server, its version and what to do, not the driver's wire-version text.
//!
//! No MongoDB 4.0 server can run here (SecantusDB, the test server, reports 8.2), so the server
//! is a small TCP listener that answers the driver's handshake (`hello` over OP_MSG) exactly as
//! a 4.0 `mongod` would: `maxWireVersion: 7`. Everything on the client side is the real driver.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};

use backup_core::config::Secret;
use mongodb::bson::{DateTime, doc};
use source_mongo::{Cause, Connection};

/// Answers every OP_MSG on `s` with a MongoDB 4.0 `hello` reply until the client goes away.
fn answer_as_mongodb_4_0(mut s: TcpStream) {
    let reply = doc! {
        "ismaster": true,
        "maxBsonObjectSize": 16_777_216,
        "maxMessageSizeBytes": 48_000_000,
        "maxWriteBatchSize": 100_000,
        "localTime": DateTime::now(),
        "logicalSessionTimeoutMinutes": 30,
        "minWireVersion": 0,
        "maxWireVersion": 7,
        "readOnly": false,
        "ok": 1.0,
    };
    let mut body = Vec::new();
    reply.to_writer(&mut body).unwrap();
    loop {
        let mut header = [0u8; 16];
        if s.read_exact(&mut header).is_err() {
            return;
        }
        let len = i32::from_le_bytes(header[0..4].try_into().unwrap()) as usize;
        let request_id = i32::from_le_bytes(header[4..8].try_into().unwrap());
        let op_code = i32::from_le_bytes(header[12..16].try_into().unwrap());
        let mut rest = vec![0u8; len.saturating_sub(16)];
        if s.read_exact(&mut rest).is_err() {
            return;
        }
        assert_eq!(op_code, 2013, "the driver speaks OP_MSG");
        let total = 16 + 4 + 1 + body.len();
        let mut msg = Vec::with_capacity(total);
        msg.extend_from_slice(&(total as i32).to_le_bytes());
        msg.extend_from_slice(&1i32.to_le_bytes());
        msg.extend_from_slice(&request_id.to_le_bytes());
        msg.extend_from_slice(&2013i32.to_le_bytes());
        msg.extend_from_slice(&0u32.to_le_bytes());
        msg.push(0);
        msg.extend_from_slice(&body);
        if s.write_all(&msg).is_err() {
            return;
        }
    }
}

#[tokio::test]
async fn a_mongodb_4_0_server_is_refused_with_its_version_and_what_to_do() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for s in listener.incoming().flatten() {
            std::thread::spawn(move || answer_as_mongodb_4_0(s));
        }
    });
    let uri = Secret::new(format!(
        "mongodb://backup:Old4Secr3t@127.0.0.1:{port}/?directConnection=true&serverSelectionTimeoutMS=20000"
    ));
    let conn = Connection::open(&uri).await.unwrap();
    let e = conn.ping("mes").await.unwrap_err();
    let msg = e.to_string();
    assert_eq!(
        msg,
        format!(
            "connecting to database mes: MongoDB server at 127.0.0.1:{port} reports wire version 7 (MongoDB 4.0); \
             packrat's MongoDB driver supports MongoDB 4.4 and newer (wire version 9+): upgrade the server to \
             MongoDB 4.4 or newer, or keep backing it up with the mongodump of its own version until then (see \
             docs/mongo.md)"
        )
    );
    assert_eq!(e.cause(), Some(Cause::IncompatibleServer));
    assert!(!msg.contains("Old4Secr3t") && !format!("{e:?}").contains("Old4Secr3t"));
}
