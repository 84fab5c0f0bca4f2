//! A JSON object's top-level fields, read without building a tree, and edits spliced into its
//! bytes.
//!
//! The relay forwards a client's body as it came: only the `model` value (and what exai must
//! add, such as `stream_options.include_usage`) changes. [`Fields`] walks the object once with
//! serde_json, keeping each top-level value as a borrowed [`RawValue`] — so its byte range in the
//! body is known and nothing below the top level is allocated — and [`splice`] rewrites just
//! those ranges. Spacing, key order, number spelling, unknown fields, thinking signatures and
//! `cache_control` markers are untouched.

use std::borrow::Cow;
use std::fmt;
use std::ops::Range;

use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde_json::value::RawValue;

/// The top-level fields of one JSON object, in body order, each with its raw value.
pub(crate) struct Fields<'a> {
    raw: &'a [u8],
    entries: Vec<(Cow<'a, str>, &'a RawValue)>,
}

impl<'a> Fields<'a> {
    /// Reads `raw` as one JSON object; the error says what is wrong with it.
    pub fn parse(raw: &'a [u8]) -> Result<Self, String> {
        let entries = serde_json::from_slice::<Entries<'a>>(raw).map_err(|e| e.to_string())?;
        // A key given twice is refused: the gateway and the provider could each read another
        // of its values (a model routed and billed as one, served as the other).
        let mut seen = std::collections::HashSet::with_capacity(entries.0.len());
        if let Some((key, _)) = entries.0.iter().find(|(k, _)| !seen.insert(k.as_ref())) {
            return Err(format!("the field {key:?} is given twice"));
        }
        Ok(Self {
            raw,
            entries: entries.0,
        })
    }

    /// The raw value of `key` (the last one, as serde_json would keep).
    pub fn get(&self, key: &str) -> Option<&'a RawValue> {
        self.entries.iter().rev().find(|(k, _)| k == key).map(|(_, v)| *v)
    }

    /// Where `key`'s value sits in the body.
    pub fn range(&self, key: &str) -> Option<Range<usize>> {
        let value = self.get(key)?.get();
        let start = value.as_ptr() as usize - self.raw.as_ptr() as usize;
        Some(start..start + value.len())
    }

    /// `key` as a string: `None` when absent, an error when present and not a string.
    pub fn string(&self, key: &str) -> Result<Option<String>, String> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => serde_json::from_str::<String>(v.get())
                .map(Some)
                .map_err(|_| format!("{key}: must be a string")),
        }
    }

    /// `key` as a boolean (`null` and absent are `false`).
    pub fn flag(&self, key: &str) -> Result<bool, String> {
        match self.get(key).map(RawValue::get) {
            None | Some("null") => Ok(false),
            Some(v) => serde_json::from_str::<bool>(v).map_err(|_| format!("{key}: must be a boolean")),
        }
    }

    /// `key` deserialized as `T`, when present and not `null`.
    pub fn parsed<T: serde::de::DeserializeOwned>(&self, key: &str) -> Result<Option<T>, String> {
        match self.get(key).map(RawValue::get) {
            None | Some("null") => Ok(None),
            Some(v) => serde_json::from_str(v).map(Some).map_err(|e| format!("{key}: {e}")),
        }
    }

    /// Whether `key` is a non-empty array (an error names what it is instead).
    pub fn non_empty_array(&self, key: &str) -> Result<(), String> {
        let Some(v) = self.get(key) else {
            return Err(format!("{key}: field required"));
        };
        let v = v.get().trim_start();
        if !v.starts_with('[') {
            return Err(format!("{key}: must be an array"));
        }
        if v[1..].trim_start().starts_with(']') {
            return Err(format!("{key}: at least one message is required"));
        }
        Ok(())
    }

    /// Where a new field can be inserted: just after the object's `{`, and whether a comma must
    /// follow it (the object has fields).
    pub fn insertion_point(&self) -> (usize, bool) {
        let open = self.raw.iter().position(|b| *b == b'{').map_or(0, |i| i + 1);
        (open, !self.entries.is_empty())
    }
}

/// One change to a body: the bytes in `range` replaced by `text` (an empty range inserts).
pub(crate) struct Edit {
    pub range: Range<usize>,
    pub text: Vec<u8>,
}

impl Edit {
    /// Sets field `key` to `value` (raw JSON): its value replaced when present, else the field
    /// inserted first.
    pub fn set(fields: &Fields<'_>, key: &str, value: &str) -> Self {
        match fields.range(key) {
            Some(range) => Self {
                range,
                text: value.as_bytes().to_vec(),
            },
            None => {
                let (at, comma) = fields.insertion_point();
                let mut text = serde_json::to_vec(key).unwrap_or_default();
                text.push(b':');
                text.extend_from_slice(value.as_bytes());
                if comma {
                    text.push(b',');
                }
                Self { range: at..at, text }
            }
        }
    }
}

/// `raw` with `edits` applied (ranges must not overlap; any order).
pub(crate) fn splice(raw: &[u8], mut edits: Vec<Edit>) -> Vec<u8> {
    edits.sort_by_key(|e| (e.range.start, e.range.end));
    let extra: usize = edits.iter().map(|e| e.text.len()).sum();
    let mut out = Vec::with_capacity(raw.len() + extra);
    let mut at = 0;
    for edit in edits {
        out.extend_from_slice(&raw[at..edit.range.start.max(at)]);
        out.extend_from_slice(&edit.text);
        at = edit.range.end.max(at);
    }
    out.extend_from_slice(&raw[at..]);
    out
}

/// A JSON string literal.
pub(crate) fn string_literal(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into())
}

/// The object's entries, read by [`EntriesVisitor`].
struct Entries<'a>(Vec<(Cow<'a, str>, &'a RawValue)>);

/// A key, borrowed from the body unless it had escapes.
struct Key<'a>(Cow<'a, str>);

impl<'de> serde::Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl<'de> Visitor<'de> for KeyVisitor {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string key")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Key(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Key(Cow::Owned(v.to_string())))
            }
        }
        d.deserialize_str(KeyVisitor)
    }
}

impl<'de> serde::Deserialize<'de> for Entries<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_map(EntriesVisitor)
    }
}

struct EntriesVisitor;

impl<'de> Visitor<'de> for EntriesVisitor {
    type Value = Entries<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut entries = Vec::with_capacity(map.size_hint().unwrap_or(8));
        while let Some(key) = map.next_key::<Key<'de>>()? {
            let value: &'de RawValue = map.next_value()?;
            entries.push((key.0, value));
        }
        Ok(Entries(entries))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_keep_their_bytes_and_only_the_edits_change() -> Result<(), String> {
        let raw = br#"{ "model" : "claude-x",  "max_tokens":1e3, "messages":[{"role":"user","content":"hi \"model\""}],
 "thinking": {"signature": "abc=="}, "z\u0041": 1 }"#;
        let fields = Fields::parse(raw)?;
        assert_eq!(fields.string("model")?.as_deref(), Some("claude-x"));
        assert_eq!(fields.get("zA").map(RawValue::get), Some("1"));
        fields.non_empty_array("messages")?;
        let out = splice(raw, vec![Edit::set(&fields, "model", &string_literal("glm-4.6"))]);
        let want = String::from_utf8_lossy(raw).replacen("\"claude-x\"", "\"glm-4.6\"", 1);
        assert_eq!(String::from_utf8_lossy(&out), want);
        let added = splice(
            raw,
            vec![Edit::set(&fields, "stream_options", r#"{"include_usage":true}"#)],
        );
        let value: serde_json::Value = serde_json::from_slice(&added).map_err(|e| e.to_string())?;
        assert_eq!(value["stream_options"]["include_usage"], true);
        assert_eq!(value["max_tokens"], 1000.0);
        Ok(())
    }

    #[test]
    fn a_key_given_twice_is_refused_even_spelled_with_an_escape() {
        assert!(Fields::parse(br#"{"model":"a","model":"b"}"#).is_err());
        assert!(Fields::parse(br#"{"model":"a","mod\u0065l":"b"}"#).is_err());
        assert!(Fields::parse(br#"{"model":"a","nested":{"model":"b","model":"c"}}"#).is_ok());
    }

    #[test]
    fn what_is_not_an_object_is_refused() {
        assert!(Fields::parse(b"[1]").is_err());
        assert!(Fields::parse(b"{\"a\":").is_err());
        let empty = Fields::parse(b"{}").map(|f| f.insertion_point());
        assert_eq!(empty.ok(), Some((1, false)));
        let fields = Fields::parse(br#"{"messages": [ ]}"#);
        assert!(fields.is_ok_and(|f| f.non_empty_array("messages").is_err()));
    }
}
