//! What a `Deserialize` type accepts, read from serde itself: the keys a struct takes
//! (nested structs as dotted keys), a struct's field names, and the spellings an enumeration
//! takes. The configuration uses it to know every key it parses and the command catalogue to
//! list each action's params, so neither list can drift from the types.

use std::cell::RefCell;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, Visitor};

/// One key a type takes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Key {
    /// `section.key`.
    pub path: String,
    /// A table of free keys (such as the per-action rate limits), not a single value.
    pub free_map: bool,
}

/// Every leaf key `T` takes, nested structs flattened into dotted paths, in declaration
/// order. Meant for types whose fields are all optional, tables or structs (a leaf that
/// must hold a value ends the walk of its struct).
pub fn keys<'de, T: de::Deserialize<'de>>() -> Vec<Key> {
    let seen = RefCell::new(Vec::new());
    let _ = T::deserialize(Probe {
        prefix: String::new(),
        seen: &seen,
    });
    seen.into_inner()
        .into_iter()
        .filter(|(_, kind)| *kind != Kind::Section)
        .map(|(path, kind)| Key {
            path,
            free_map: kind == Kind::Map,
        })
        .collect()
}

/// The field names of a struct, as serde reads them.
pub fn fields<'de, T: de::Deserialize<'de>>() -> Vec<&'static str> {
    let mut out = Vec::new();
    let _ = T::deserialize(Names { out: &mut out });
    out
}

/// The spellings of a unit enumeration, as serde reads them.
pub fn variants<'de, T: de::Deserialize<'de>>() -> Vec<&'static str> {
    let mut out = Vec::new();
    let _ = T::deserialize(Names { out: &mut out });
    out
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Leaf,
    Map,
    Section,
}

/// The probes' error: they never produce a real value.
#[derive(Debug)]
struct Stop;

impl std::fmt::Display for Stop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("introspection probe")
    }
}

impl std::error::Error for Stop {}

impl de::Error for Stop {
    fn custom<T: std::fmt::Display>(_: T) -> Self {
        Stop
    }
}

/// Records the keys of the struct it is asked for, then feeds every field a probe of its own,
/// so nested structs and tables reveal themselves.
struct Probe<'a> {
    prefix: String,
    seen: &'a RefCell<Vec<(String, Kind)>>,
}

impl Probe<'_> {
    fn mark(&self, kind: Kind) {
        let mut seen = self.seen.borrow_mut();
        if let Some(entry) = seen.iter_mut().find(|(p, _)| *p == self.prefix) {
            entry.1 = kind;
        }
    }
}

impl<'de> Deserializer<'de> for Probe<'_> {
    type Error = Stop;

    fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Stop> {
        Err(Stop)
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Stop> {
        visitor.visit_none()
    }

    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Stop> {
        self.mark(Kind::Map);
        visitor.visit_map(de::value::MapDeserializer::<
            std::iter::Empty<(&str, &str)>,
            Stop,
        >::new(std::iter::empty()))
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Stop> {
        self.mark(Kind::Section);
        let paths: Vec<String> = fields
            .iter()
            .map(|f| {
                if self.prefix.is_empty() {
                    (*f).to_owned()
                } else {
                    format!("{}.{f}", self.prefix)
                }
            })
            .collect();
        self.seen
            .borrow_mut()
            .extend(paths.iter().map(|p| (p.clone(), Kind::Leaf)));
        visitor.visit_map(Fields {
            names: fields.iter(),
            paths: paths.into_iter(),
            current: String::new(),
            seen: self.seen,
        })
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf unit unit_struct newtype_struct seq tuple
        tuple_struct enum identifier ignored_any
    }
}

/// Offers each field of a struct once, its value a probe under the field's path.
struct Fields<'a> {
    names: std::slice::Iter<'static, &'static str>,
    paths: std::vec::IntoIter<String>,
    current: String,
    seen: &'a RefCell<Vec<(String, Kind)>>,
}

impl<'de> MapAccess<'de> for Fields<'_> {
    type Error = Stop;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, Stop> {
        match (self.names.next(), self.paths.next()) {
            (Some(name), Some(path)) => {
                self.current = path;
                seed.deserialize(de::value::BorrowedStrDeserializer::<Stop>::new(name))
                    .map(Some)
            }
            _ => Ok(None),
        }
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, Stop> {
        seed.deserialize(Probe {
            prefix: self.current.clone(),
            seen: self.seen,
        })
    }
}

/// Records the names serde hands a deserializer: a struct's fields or an enum's variants.
struct Names<'a> {
    out: &'a mut Vec<&'static str>,
}

impl<'de> Deserializer<'de> for Names<'_> {
    type Error = Stop;

    fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Stop> {
        Err(Stop)
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        _visitor: V,
    ) -> Result<V::Value, Stop> {
        self.out.extend_from_slice(fields);
        Err(Stop)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        variants: &'static [&'static str],
        _visitor: V,
    ) -> Result<V::Value, Stop> {
        self.out.extend_from_slice(variants);
        Err(Stop)
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf option unit unit_struct newtype_struct seq tuple
        tuple_struct map identifier ignored_any
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Deserialize, Default)]
    #[serde(default, deny_unknown_fields)]
    #[allow(dead_code)]
    struct Inner {
        a: Option<String>,
        limits: std::collections::BTreeMap<String, String>,
    }

    #[derive(Deserialize, Default)]
    #[serde(default, deny_unknown_fields)]
    #[allow(dead_code)]
    struct Outer {
        top: Option<u32>,
        inner: Inner,
    }

    #[derive(Deserialize)]
    #[allow(dead_code)]
    enum Colour {
        #[serde(rename = "red")]
        Red,
        Blue,
    }

    #[test]
    fn nested_keys_tables_and_variants() {
        let keys = keys::<Outer>();
        let shown: Vec<(&str, bool)> = keys.iter().map(|k| (k.path.as_str(), k.free_map)).collect();
        assert_eq!(
            shown,
            [("top", false), ("inner.a", false), ("inner.limits", true)]
        );
        assert_eq!(fields::<Outer>(), ["top", "inner"]);
        assert_eq!(variants::<Colour>(), ["red", "Blue"]);
    }
}
