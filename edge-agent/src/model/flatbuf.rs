//! A minimal, bounds-checked reader of the FlatBuffer wire format, enough to find
//! fields of a TF Lite model and the byte positions they live at, so that `head.rs`
//! can patch them in place.
//!
//! Why our own and not a crate: the `tflite` crate's `model::Model` unpacks through
//! TF Lite 1.15's schema and repacks the whole file, which drops every field newer
//! than 1.15 (the signature defs LiteRT reads its inputs and outputs from among them)
//! and rewrites every byte. A retrained model must differ from its parent in its last
//! layer only, so we edit bytes where they are. The `flatbuffers` crate's generic
//! `Table` gives field values, not their positions. The format (tables with vtables,
//! forward `uoffset`s, length-prefixed vectors) is the one in the FlatBuffers
//! "Internals" page; every read here checks its bounds and returns `None` past them.

/// A FlatBuffer: the whole file.
#[derive(Clone, Copy)]
pub struct Buf<'a>(pub &'a [u8]);

/// A table at a byte position of the buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Table(pub usize);

/// A vector at a byte position (its u32 length; elements start 4 bytes on).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Vector(pub usize);

impl<'a> Buf<'a> {
    pub fn u8_at(&self, pos: usize) -> Option<u8> {
        self.0.get(pos).copied()
    }

    pub fn u16_at(&self, pos: usize) -> Option<u16> {
        Some(u16::from_le_bytes(
            self.0.get(pos..pos + 2)?.try_into().ok()?,
        ))
    }

    pub fn u32_at(&self, pos: usize) -> Option<u32> {
        Some(u32::from_le_bytes(
            self.0.get(pos..pos + 4)?.try_into().ok()?,
        ))
    }

    pub fn i32_at(&self, pos: usize) -> Option<i32> {
        Some(i32::from_le_bytes(
            self.0.get(pos..pos + 4)?.try_into().ok()?,
        ))
    }

    pub fn f32_at(&self, pos: usize) -> Option<f32> {
        Some(f32::from_le_bytes(
            self.0.get(pos..pos + 4)?.try_into().ok()?,
        ))
    }

    /// Follows the forward `uoffset` stored at `pos`.
    fn follow(&self, pos: usize) -> Option<usize> {
        pos.checked_add(self.u32_at(pos)? as usize)
            .filter(|&p| p < self.0.len())
    }

    /// The root table (the uoffset at byte 0).
    pub fn root(&self) -> Option<Table> {
        self.follow(0).map(Table)
    }

    /// Byte position of field `slot` (its number in the schema, from 0) of `table`,
    /// or `None` when the field is absent (the default value applies).
    pub fn field_pos(&self, table: Table, slot: usize) -> Option<usize> {
        let soffset = self.i32_at(table.0)? as i64;
        let vtable = usize::try_from(table.0 as i64 - soffset).ok()?;
        let vtable_len = self.u16_at(vtable)? as usize;
        let entry = 4 + 2 * slot;
        if entry + 2 > vtable_len {
            return None;
        }
        match self.u16_at(vtable + entry)? {
            0 => None,
            offset => Some(table.0 + offset as usize),
        }
    }

    pub fn table_field(&self, table: Table, slot: usize) -> Option<Table> {
        self.follow(self.field_pos(table, slot)?).map(Table)
    }

    pub fn vector_field(&self, table: Table, slot: usize) -> Option<Vector> {
        self.follow(self.field_pos(table, slot)?).map(Vector)
    }

    pub fn u32_field(&self, table: Table, slot: usize, default: u32) -> Option<u32> {
        match self.field_pos(table, slot) {
            None => Some(default),
            Some(pos) => self.u32_at(pos),
        }
    }

    pub fn i32_field(&self, table: Table, slot: usize, default: i32) -> Option<i32> {
        match self.field_pos(table, slot) {
            None => Some(default),
            Some(pos) => self.i32_at(pos),
        }
    }

    pub fn u8_field(&self, table: Table, slot: usize, default: u8) -> Option<u8> {
        match self.field_pos(table, slot) {
            None => Some(default),
            Some(pos) => self.u8_at(pos),
        }
    }

    pub fn f32_field(&self, table: Table, slot: usize, default: f32) -> Option<f32> {
        match self.field_pos(table, slot) {
            None => Some(default),
            Some(pos) => self.f32_at(pos),
        }
    }

    /// Number of elements of a vector.
    pub fn len(&self, vector: Vector) -> Option<usize> {
        self.u32_at(vector.0).map(|n| n as usize)
    }

    /// Byte position of element `i` of a vector of `width`-byte scalars.
    pub fn element_pos(&self, vector: Vector, i: usize, width: usize) -> Option<usize> {
        let len = self.len(vector)?;
        let pos = vector.0 + 4 + i.checked_mul(width)?;
        (i < len && pos + width <= self.0.len()).then_some(pos)
    }

    /// Element `i` of a vector of tables.
    pub fn table_at(&self, vector: Vector, i: usize) -> Option<Table> {
        self.follow(self.element_pos(vector, i, 4)?).map(Table)
    }

    /// A vector of i32 (shapes, tensor indices) as values.
    pub fn i32s(&self, vector: Vector) -> Option<Vec<i32>> {
        (0..self.len(vector)?)
            .map(|i| self.i32_at(self.element_pos(vector, i, 4)?))
            .collect()
    }

    /// The bytes of a `[ubyte]` vector.
    pub fn bytes(&self, vector: Vector) -> Option<&'a [u8]> {
        let len = self.len(vector)?;
        self.0.get(vector.0 + 4..vector.0 + 4 + len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A hand-built buffer: root table with a u32 field (slot 0) and a vector of
    /// i32 (slot 1); slot 2 absent.
    fn sample() -> Vec<u8> {
        let mut b = vec![0u8; 40];
        // root uoffset -> table at 16
        b[0..4].copy_from_slice(&16u32.to_le_bytes());
        // vtable at 8: len 8, table len 12, slot0 at +4, slot1 at +8
        b[8..10].copy_from_slice(&8u16.to_le_bytes());
        b[10..12].copy_from_slice(&12u16.to_le_bytes());
        b[12..14].copy_from_slice(&4u16.to_le_bytes());
        b[14..16].copy_from_slice(&8u16.to_le_bytes());
        // table at 16: soffset = 16 - 8 = 8
        b[16..20].copy_from_slice(&8i32.to_le_bytes());
        b[20..24].copy_from_slice(&7u32.to_le_bytes());
        // slot 1 uoffset at 24 -> vector at 28
        b[24..28].copy_from_slice(&4u32.to_le_bytes());
        b[28..32].copy_from_slice(&2u32.to_le_bytes());
        b[32..36].copy_from_slice(&(-1i32).to_le_bytes());
        b[36..40].copy_from_slice(&1280i32.to_le_bytes());
        b
    }

    #[test]
    fn reads_fields_vectors_and_defaults() {
        let bytes = sample();
        let buf = Buf(&bytes);
        let root = buf.root().unwrap();
        assert_eq!(buf.u32_field(root, 0, 0), Some(7));
        assert_eq!(
            buf.i32s(buf.vector_field(root, 1).unwrap()),
            Some(vec![-1, 1280])
        );
        assert_eq!(
            buf.u32_field(root, 2, 42),
            Some(42),
            "absent field: default"
        );
        assert_eq!(buf.field_pos(root, 2), None);
    }

    #[test]
    fn reads_past_the_end_are_none_not_panics() {
        let mut bytes = sample();
        // vector claims 1000 elements
        bytes[28..32].copy_from_slice(&1000u32.to_le_bytes());
        let buf = Buf(&bytes);
        let v = buf.vector_field(buf.root().unwrap(), 1).unwrap();
        assert_eq!(buf.i32s(v), None);
        assert_eq!(Buf(&bytes[..3]).root(), None);
    }
}
