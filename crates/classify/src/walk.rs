//! A complete walk of a pg_query parse tree, through the tree's `serde::Serialize` impls.
//!
//! pg_query's own `nodes()` iterator follows only the fields it needs for table and function
//! lists, so a locking clause or a function call in a less common place (a VALUES list, a
//! window definition, a JSON_TABLE) would be missed. Every protobuf type in pg_query derives
//! `Serialize`, and serialising visits every field of every node; so [`Facts::collect`] is a
//! serializer that writes nothing and records what it passes. Nothing here allocates except
//! the collected names.

use serde::ser::{self, Serialize};
use std::fmt;

/// What a walk of one statement found.
#[derive(Debug, Default)]
pub(crate) struct Facts {
    /// A `LockingClause` node (FOR UPDATE / NO KEY UPDATE / SHARE / KEY SHARE) somewhere.
    pub(crate) locking: bool,
    /// An `IntoClause` node (SELECT INTO, CREATE TABLE AS) somewhere.
    pub(crate) into: bool,
    /// INSERT / UPDATE / DELETE / MERGE nodes seen, at any depth (the top level included).
    pub(crate) dml: u32,
    /// Called functions: lower-case parts joined with dots, in order, with duplicates.
    pub(crate) functions: Vec<String>,
    /// Named relations: parts joined with dots, in order, with duplicates.
    pub(crate) tables: Vec<String>,
}

impl Facts {
    /// Walks `node` (any pg_query protobuf value) and adds what it finds.
    pub(crate) fn collect<T: Serialize + ?Sized>(&mut self, node: &T) {
        let mut w = Walker {
            facts: self,
            capture: None,
        };
        // The walker's error type is uninhabited in practice: it never fails.
        let _ = node.serialize(&mut w);
    }
}

struct Walker<'f> {
    facts: &'f mut Facts,
    /// While `Some`, every string met is pushed here (the parts of a function name).
    capture: Option<Vec<String>>,
}

/// The walker never fails; this type exists because serde needs an error type.
#[derive(Debug)]
pub(crate) struct NoError;

impl fmt::Display for NoError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("walk error")
    }
}

impl std::error::Error for NoError {}

impl ser::Error for NoError {
    fn custom<T: fmt::Display>(_msg: T) -> Self {
        NoError
    }
}

type R = Result<(), NoError>;

/// The struct being walked, and the RangeVar parts seen so far.
pub(crate) struct StructWalk<'a, 'f> {
    w: &'a mut Walker<'f>,
    name: &'static str,
    range_parts: [Option<String>; 3],
}

impl<'a, 'f> ser::Serializer for &'a mut Walker<'f> {
    type Ok = ();
    type Error = NoError;
    type SerializeSeq = Self;
    type SerializeTuple = Self;
    type SerializeTupleStruct = Self;
    type SerializeTupleVariant = Self;
    type SerializeMap = Self;
    type SerializeStruct = StructWalk<'a, 'f>;
    type SerializeStructVariant = StructWalk<'a, 'f>;

    fn serialize_bool(self, _: bool) -> R {
        Ok(())
    }
    fn serialize_i8(self, _: i8) -> R {
        Ok(())
    }
    fn serialize_i16(self, _: i16) -> R {
        Ok(())
    }
    fn serialize_i32(self, _: i32) -> R {
        Ok(())
    }
    fn serialize_i64(self, _: i64) -> R {
        Ok(())
    }
    fn serialize_u8(self, _: u8) -> R {
        Ok(())
    }
    fn serialize_u16(self, _: u16) -> R {
        Ok(())
    }
    fn serialize_u32(self, _: u32) -> R {
        Ok(())
    }
    fn serialize_u64(self, _: u64) -> R {
        Ok(())
    }
    fn serialize_f32(self, _: f32) -> R {
        Ok(())
    }
    fn serialize_f64(self, _: f64) -> R {
        Ok(())
    }
    fn serialize_char(self, _: char) -> R {
        Ok(())
    }
    fn serialize_str(self, v: &str) -> R {
        if let Some(parts) = self.capture.as_mut() {
            parts.push(v.to_owned());
        }
        Ok(())
    }
    fn serialize_bytes(self, _: &[u8]) -> R {
        Ok(())
    }
    fn serialize_none(self) -> R {
        Ok(())
    }
    fn serialize_some<T: Serialize + ?Sized>(self, v: &T) -> R {
        v.serialize(self)
    }
    fn serialize_unit(self) -> R {
        Ok(())
    }
    fn serialize_unit_struct(self, _: &'static str) -> R {
        Ok(())
    }
    fn serialize_unit_variant(self, _: &'static str, _: u32, _: &'static str) -> R {
        Ok(())
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(self, _: &'static str, v: &T) -> R {
        v.serialize(self)
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        v: &T,
    ) -> R {
        v.serialize(self)
    }
    fn serialize_seq(self, _: Option<usize>) -> Result<Self, NoError> {
        Ok(self)
    }
    fn serialize_tuple(self, _: usize) -> Result<Self, NoError> {
        Ok(self)
    }
    fn serialize_tuple_struct(self, _: &'static str, _: usize) -> Result<Self, NoError> {
        Ok(self)
    }
    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self, NoError> {
        Ok(self)
    }
    fn serialize_map(self, _: Option<usize>) -> Result<Self, NoError> {
        Ok(self)
    }
    fn serialize_struct(self, name: &'static str, _: usize) -> Result<StructWalk<'a, 'f>, NoError> {
        match name {
            "LockingClause" => self.facts.locking = true,
            "IntoClause" => self.facts.into = true,
            "InsertStmt" | "UpdateStmt" | "DeleteStmt" | "MergeStmt" => self.facts.dml += 1,
            _ => {}
        }
        Ok(StructWalk {
            w: self,
            name,
            range_parts: [None, None, None],
        })
    }
    fn serialize_struct_variant(
        self,
        name: &'static str,
        _: u32,
        _: &'static str,
        len: usize,
    ) -> Result<StructWalk<'a, 'f>, NoError> {
        self.serialize_struct(name, len)
    }
}

impl ser::SerializeSeq for &mut Walker<'_> {
    type Ok = ();
    type Error = NoError;
    fn serialize_element<T: Serialize + ?Sized>(&mut self, v: &T) -> R {
        v.serialize(&mut **self)
    }
    fn end(self) -> R {
        Ok(())
    }
}

impl ser::SerializeTuple for &mut Walker<'_> {
    type Ok = ();
    type Error = NoError;
    fn serialize_element<T: Serialize + ?Sized>(&mut self, v: &T) -> R {
        v.serialize(&mut **self)
    }
    fn end(self) -> R {
        Ok(())
    }
}

impl ser::SerializeTupleStruct for &mut Walker<'_> {
    type Ok = ();
    type Error = NoError;
    fn serialize_field<T: Serialize + ?Sized>(&mut self, v: &T) -> R {
        v.serialize(&mut **self)
    }
    fn end(self) -> R {
        Ok(())
    }
}

impl ser::SerializeTupleVariant for &mut Walker<'_> {
    type Ok = ();
    type Error = NoError;
    fn serialize_field<T: Serialize + ?Sized>(&mut self, v: &T) -> R {
        v.serialize(&mut **self)
    }
    fn end(self) -> R {
        Ok(())
    }
}

impl ser::SerializeMap for &mut Walker<'_> {
    type Ok = ();
    type Error = NoError;
    fn serialize_key<T: Serialize + ?Sized>(&mut self, k: &T) -> R {
        k.serialize(&mut **self)
    }
    fn serialize_value<T: Serialize + ?Sized>(&mut self, v: &T) -> R {
        v.serialize(&mut **self)
    }
    fn end(self) -> R {
        Ok(())
    }
}

impl StructWalk<'_, '_> {
    fn field<T: Serialize + ?Sized>(&mut self, key: &'static str, v: &T) -> R {
        match (self.name, key) {
            ("FuncCall", "funcname") => {
                let outer = self.w.capture.replace(Vec::new());
                v.serialize(&mut *self.w)?;
                let parts = std::mem::replace(&mut self.w.capture, outer).unwrap_or_default();
                let mut name = String::new();
                for (i, p) in parts.iter().enumerate() {
                    if i > 0 {
                        name.push('.');
                    }
                    name.push_str(&p.to_lowercase());
                }
                self.w.facts.functions.push(name);
                Ok(())
            }
            ("RangeVar", "catalogname" | "schemaname" | "relname") => {
                let slot = match key {
                    "catalogname" => 0,
                    "schemaname" => 1,
                    _ => 2,
                };
                let outer = self.w.capture.replace(Vec::new());
                v.serialize(&mut *self.w)?;
                let got = std::mem::replace(&mut self.w.capture, outer).unwrap_or_default();
                self.range_parts[slot] = got.into_iter().find(|s| !s.is_empty());
                Ok(())
            }
            _ => v.serialize(&mut *self.w),
        }
    }

    fn finish(self) -> R {
        if self.name == "RangeVar" {
            let name = self
                .range_parts
                .into_iter()
                .flatten()
                .collect::<Vec<_>>()
                .join(".");
            if !name.is_empty() {
                self.w.facts.tables.push(name);
            }
        }
        Ok(())
    }
}

impl ser::SerializeStruct for StructWalk<'_, '_> {
    type Ok = ();
    type Error = NoError;
    fn serialize_field<T: Serialize + ?Sized>(&mut self, key: &'static str, v: &T) -> R {
        self.field(key, v)
    }
    fn end(self) -> R {
        self.finish()
    }
}

impl ser::SerializeStructVariant for StructWalk<'_, '_> {
    type Ok = ();
    type Error = NoError;
    fn serialize_field<T: Serialize + ?Sized>(&mut self, key: &'static str, v: &T) -> R {
        self.field(key, v)
    }
    fn end(self) -> R {
        self.finish()
    }
}
