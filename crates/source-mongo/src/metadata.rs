//! `<collection>.metadata.json` in mongodump's shape: collection options, index specifications,
//! UUID, name and type, as canonical Extended JSON with the documents' key order kept (the
//! order of a compound index's keys matters).

use mongodb::bson::{Bson, Document};
use serde::de::{self, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer};

/// The metadata of one collection.
#[derive(Debug, Clone, PartialEq)]
pub struct Metadata {
    /// The collection's name.
    pub collection_name: String,
    /// `collection` (views and time series are not backed up).
    pub kind: String,
    /// Options given at creation (`capped`, `validator`, `collation`, …).
    pub options: Document,
    /// Index specifications as `listIndexes` returns them.
    pub indexes: Vec<Document>,
    /// The collection's UUID (hex), when the server reports one.
    pub uuid: Option<String>,
}

impl Metadata {
    /// Renders mongodump's `metadata.json`.
    pub fn to_json(&self) -> String {
        let mut out = String::from("{\"options\":");
        write_doc(&mut out, &self.options);
        out.push_str(",\"indexes\":[");
        for (i, ix) in self.indexes.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            write_doc(&mut out, ix);
        }
        out.push(']');
        if let Some(u) = &self.uuid {
            out.push_str(",\"uuid\":");
            out.push_str(&json_str(u));
        }
        out.push_str(",\"collectionName\":");
        out.push_str(&json_str(&self.collection_name));
        out.push_str(",\"type\":");
        out.push_str(&json_str(&self.kind));
        out.push_str("}\n");
        out
    }

    /// Parses a `metadata.json` (ours or mongodump's).
    pub fn parse(bytes: &[u8]) -> Result<Metadata, String> {
        let tree: Ordered = serde_json::from_slice(bytes).map_err(|e| format!("invalid JSON: {e}"))?;
        let Ordered::Object(fields) = tree else {
            return Err("not a JSON object".into());
        };
        let mut m = Metadata {
            collection_name: String::new(),
            kind: "collection".into(),
            options: Document::new(),
            indexes: Vec::new(),
            uuid: None,
        };
        for (k, v) in fields {
            match (k.as_str(), v) {
                ("options", v) => match to_bson(v)? {
                    Bson::Document(d) => m.options = d,
                    _ => return Err("`options` is not an object".into()),
                },
                ("indexes", Ordered::Array(items)) => {
                    for item in items {
                        match to_bson(item)? {
                            Bson::Document(d) => m.indexes.push(d),
                            _ => return Err("an entry of `indexes` is not an object".into()),
                        }
                    }
                }
                ("indexes", _) => return Err("`indexes` is not an array".into()),
                ("uuid", Ordered::Str(s)) => m.uuid = Some(s),
                ("collectionName", Ordered::Str(s)) => m.collection_name = s,
                ("type", Ordered::Str(s)) => m.kind = s,
                _ => {}
            }
        }
        Ok(m)
    }

    /// The index specifications to pass to `createIndexes`: all but `_id_`, without the
    /// server-managed `v` and `ns` fields.
    pub fn index_specs(&self) -> Vec<Document> {
        self.indexes
            .iter()
            .filter(|ix| ix.get_str("name").ok() != Some("_id_"))
            .map(|ix| {
                let mut d = ix.clone();
                d.remove("v");
                d.remove("ns");
                d
            })
            .collect()
    }
}

fn json_str(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into())
}

fn write_doc(out: &mut String, d: &Document) {
    out.push('{');
    for (i, (k, v)) in d.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(&json_str(k));
        out.push(':');
        write_value(out, v);
    }
    out.push('}');
}

fn write_value(out: &mut String, v: &Bson) {
    match v {
        Bson::Document(d) => write_doc(out, d),
        Bson::Array(a) => {
            out.push('[');
            for (i, x) in a.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_value(out, x);
            }
            out.push(']');
        }
        leaf => out.push_str(&leaf.clone().into_canonical_extjson().to_string()),
    }
}

/// JSON with object key order kept.
#[derive(Debug, Clone)]
enum Ordered {
    Null,
    Bool(bool),
    Num(serde_json::Number),
    Str(String),
    Array(Vec<Ordered>),
    Object(Vec<(String, Ordered)>),
}

impl<'de> Deserialize<'de> for Ordered {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Ordered, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Ordered;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("JSON")
            }
            fn visit_unit<E: de::Error>(self) -> Result<Ordered, E> {
                Ok(Ordered::Null)
            }
            fn visit_bool<E: de::Error>(self, b: bool) -> Result<Ordered, E> {
                Ok(Ordered::Bool(b))
            }
            fn visit_i64<E: de::Error>(self, n: i64) -> Result<Ordered, E> {
                Ok(Ordered::Num(n.into()))
            }
            fn visit_u64<E: de::Error>(self, n: u64) -> Result<Ordered, E> {
                Ok(Ordered::Num(n.into()))
            }
            fn visit_f64<E: de::Error>(self, n: f64) -> Result<Ordered, E> {
                serde_json::Number::from_f64(n)
                    .map(Ordered::Num)
                    .ok_or_else(|| E::custom("non-finite number"))
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Ordered, E> {
                Ok(Ordered::Str(s.to_string()))
            }
            fn visit_string<E: de::Error>(self, s: String) -> Result<Ordered, E> {
                Ok(Ordered::Str(s))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut a: A) -> Result<Ordered, A::Error> {
                let mut v = Vec::new();
                while let Some(x) = a.next_element()? {
                    v.push(x);
                }
                Ok(Ordered::Array(v))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut a: A) -> Result<Ordered, A::Error> {
                let mut v = Vec::new();
                while let Some((k, x)) = a.next_entry()? {
                    v.push((k, x));
                }
                Ok(Ordered::Object(v))
            }
        }
        d.deserialize_any(V)
    }
}

impl Ordered {
    fn into_value(self) -> serde_json::Value {
        use serde_json::Value;
        match self {
            Ordered::Null => Value::Null,
            Ordered::Bool(b) => Value::Bool(b),
            Ordered::Num(n) => Value::Number(n),
            Ordered::Str(s) => Value::String(s),
            Ordered::Array(a) => Value::Array(a.into_iter().map(Ordered::into_value).collect()),
            Ordered::Object(o) => Value::Object(o.into_iter().map(|(k, v)| (k, v.into_value())).collect()),
        }
    }
}

/// Converts ordered Extended JSON into BSON: objects whose first key starts with `$` are
/// Extended JSON wrappers (`{"$numberInt": "1"}`) and are converted by the bson crate; other
/// objects keep their key order.
fn to_bson(v: Ordered) -> Result<Bson, String> {
    match v {
        Ordered::Object(fields) if fields.first().is_some_and(|(k, _)| k.starts_with('$')) => {
            Bson::try_from(Ordered::Object(fields).into_value()).map_err(|e| format!("invalid Extended JSON: {e}"))
        }
        Ordered::Object(fields) => {
            let mut d = Document::new();
            for (k, x) in fields {
                d.insert(k, to_bson(x)?);
            }
            Ok(Bson::Document(d))
        }
        Ordered::Array(items) => items
            .into_iter()
            .map(to_bson)
            .collect::<Result<Vec<_>, _>>()
            .map(Bson::Array),
        other => Bson::try_from(other.into_value()).map_err(|e| format!("invalid Extended JSON: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use mongodb::bson::doc;

    use super::*;

    #[test]
    fn round_trips_with_key_order_and_types() {
        let m = Metadata {
            collection_name: "scanrecords".into(),
            kind: "collection".into(),
            options: doc! {"capped": true, "size": 1_000_000_i64, "max": 5_i32},
            indexes: vec![
                doc! {"v": 2, "key": {"_id": 1}, "name": "_id_"},
                doc! {"v": 2, "key": {"zeta": 1, "alpha": -1}, "name": "zeta_1_alpha_-1", "unique": true},
            ],
            uuid: Some("00112233445566778899aabbccddeeff".into()),
        };
        let json = m.to_json();
        assert!(json.contains(r#""v":{"$numberInt":"2"}"#), "{json}");
        assert!(
            json.contains(r#""key":{"zeta":{"$numberInt":"1"},"alpha":{"$numberInt":"-1"}}"#),
            "{json}"
        );
        let back = Metadata::parse(json.as_bytes()).unwrap();
        assert_eq!(back, m);
        let specs = back.index_specs();
        assert_eq!(specs.len(), 1);
        assert_eq!(
            specs[0].get_document("key").unwrap().keys().collect::<Vec<_>>(),
            ["zeta", "alpha"]
        );
        assert!(!specs[0].contains_key("v"));
    }

    #[test]
    fn reads_mongodump_output() {
        let dump = br#"{"indexes":[{"v":{"$numberInt":"2"},"key":{"_id":{"$numberInt":"1"}},"name":"_id_"}],"uuid":"5e6b","collectionName":"foo","type":"collection"}"#;
        let m = Metadata::parse(dump).unwrap();
        assert_eq!(m.collection_name, "foo");
        assert_eq!(m.indexes.len(), 1);
        assert!(Metadata::parse(b"[]").is_err());
    }
}
