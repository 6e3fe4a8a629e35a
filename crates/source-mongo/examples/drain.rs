//! The baseline of `cargo xtask bench mongo`: a bare driver cursor drain of one collection as
//! raw documents, to nowhere. Prints documents and bytes.
//!
//! ```text
//! MONGO_URI=mongodb://127.0.0.1:27017 cargo run --release -p source-mongo --example drain -- DB COLL
//! ```

use mongodb::bson::{RawDocumentBuf, doc};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let (Some(db), Some(coll)) = (args.next(), args.next()) else {
        return Err("usage: drain DB COLLECTION (URI in $MONGO_URI)".into());
    };
    let uri = std::env::var("MONGO_URI").map_err(|_| "set MONGO_URI")?;
    let client = mongodb::Client::with_uri_str(&uri).await?;
    let mut cursor = client
        .database(&db)
        .collection::<RawDocumentBuf>(&coll)
        .find(doc! {})
        .await?;
    let (mut docs, mut bytes) = (0u64, 0u64);
    while cursor.advance().await? {
        bytes += std::hint::black_box(cursor.current().as_bytes()).len() as u64;
        docs += 1;
    }
    println!("{docs} documents, {bytes} bytes");
    Ok(())
}
