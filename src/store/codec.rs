//! The compact binary encoding of stored rows.
//!
//! Owns: varints, length-prefixed strings and byte strings, and the rule that a row starts with
//! a version byte and may gain fields at its end (a decoder of an older row fills defaults).
//! Must not: know what a row means (`model.rs` does).

use super::StoreError;

/// Appends fields to a buffer.
#[derive(Default)]
pub struct Enc {
    pub buf: Vec<u8>,
}

impl Enc {
    pub fn new(version: u8) -> Enc {
        Enc { buf: vec![version] }
    }
    pub fn u64(&mut self, mut v: u64) -> &mut Self {
        loop {
            let byte = (v & 0x7f) as u8;
            v >>= 7;
            if v == 0 {
                self.buf.push(byte);
                return self;
            }
            self.buf.push(byte | 0x80);
        }
    }
    pub fn bool(&mut self, v: bool) -> &mut Self {
        self.buf.push(v as u8);
        self
    }
    pub fn bytes(&mut self, v: &[u8]) -> &mut Self {
        self.u64(v.len() as u64);
        self.buf.extend_from_slice(v);
        self
    }
    pub fn str(&mut self, v: &str) -> &mut Self {
        self.bytes(v.as_bytes())
    }
    /// `None` and `Some("")` are distinct: a 0 marker, or 1 and the string.
    pub fn opt_str(&mut self, v: Option<&str>) -> &mut Self {
        match v {
            None => self.bool(false),
            Some(s) => self.bool(true).str(s),
        }
    }
    pub fn opt_bytes(&mut self, v: Option<&[u8]>) -> &mut Self {
        match v {
            None => self.bool(false),
            Some(b) => self.bool(true).bytes(b),
        }
    }
    pub fn finish(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.buf)
    }
}

/// Reads fields back. Reading past the end yields defaults (rows grow at their end); a field cut
/// in the middle is corruption and an error.
pub struct Dec<'a> {
    buf: &'a [u8],
    pos: usize,
    pub version: u8,
}

fn corrupt(what: &str) -> StoreError {
    StoreError(format!("corrupt stored row: {what}"))
}

impl<'a> Dec<'a> {
    pub fn new(buf: &'a [u8]) -> Result<Dec<'a>, StoreError> {
        let version = *buf.first().ok_or_else(|| corrupt("empty"))?;
        Ok(Dec {
            buf,
            pos: 1,
            version,
        })
    }
    fn at_end(&self) -> bool {
        self.pos >= self.buf.len()
    }
    pub fn u64(&mut self) -> Result<u64, StoreError> {
        if self.at_end() {
            return Ok(0);
        }
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let byte = *self
                .buf
                .get(self.pos)
                .ok_or_else(|| corrupt("truncated number"))?;
            self.pos += 1;
            v |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(corrupt("number too long"))
    }
    pub fn u32(&mut self) -> Result<u32, StoreError> {
        u32::try_from(self.u64()?).map_err(|_| corrupt("number out of range"))
    }
    pub fn bool(&mut self) -> Result<bool, StoreError> {
        if self.at_end() {
            return Ok(false);
        }
        let b = self.buf[self.pos];
        self.pos += 1;
        Ok(b != 0)
    }
    pub fn bytes(&mut self) -> Result<Vec<u8>, StoreError> {
        if self.at_end() {
            return Ok(Vec::new());
        }
        let len = self.u64()? as usize;
        let end = self
            .pos
            .checked_add(len)
            .filter(|e| *e <= self.buf.len())
            .ok_or_else(|| corrupt("truncated bytes"))?;
        let out = self.buf[self.pos..end].to_vec();
        self.pos = end;
        Ok(out)
    }
    pub fn str(&mut self) -> Result<String, StoreError> {
        String::from_utf8(self.bytes()?).map_err(|_| corrupt("invalid UTF-8"))
    }
    pub fn opt_str(&mut self) -> Result<Option<String>, StoreError> {
        if self.bool()? {
            self.str().map(Some)
        } else {
            Ok(None)
        }
    }
    pub fn opt_bytes(&mut self) -> Result<Option<Vec<u8>>, StoreError> {
        if self.bool()? {
            self.bytes().map(Some)
        } else {
            Ok(None)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn fields_round_trip(n in any::<u64>(), s in ".*", o in proptest::option::of(".*"), b in any::<bool>()) {
            let bytes = Enc::new(1).u64(n).str(&s).opt_str(o.as_deref()).bool(b).finish();
            let mut d = Dec::new(&bytes).unwrap();
            prop_assert_eq!(d.u64().unwrap(), n);
            prop_assert_eq!(d.str().unwrap(), s);
            prop_assert_eq!(d.opt_str().unwrap(), o);
            prop_assert_eq!(d.bool().unwrap(), b);
            // Fields added later read as defaults.
            prop_assert_eq!(d.u64().unwrap(), 0);
            prop_assert_eq!(d.opt_str().unwrap(), None);
        }

        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            if let Ok(mut d) = Dec::new(&bytes) {
                let _ = d.u64();
                let _ = d.str();
                let _ = d.opt_bytes();
            }
        }
    }

    #[test]
    fn truncated_strings_are_errors() {
        let bytes = Enc::new(1).str("hello").finish();
        let mut d = Dec::new(&bytes[..4]).unwrap();
        assert!(d.str().is_err());
    }
}
