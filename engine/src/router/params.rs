//! Captured `{param}` segments of a matched path, as byte ranges into that path.
//!
//! Owns the small inline store that keeps a match allocation-free: up to [`PARAMS_INLINE`]
//! ranges live in the struct; a route with more parameters (validation allows it, nothing
//! sensible needs it) spills the rest into a `Vec`, the only allocation a match can make.

use std::ops::Range;

/// Parameters stored without touching the heap.
pub const PARAMS_INLINE: usize = 8;

/// The parameters of a [`super::Match`], in the order their segments appear in the route's
/// pattern. Index `i` is the route's `i`-th parameter; [`super::Router::param`] resolves a
/// name, and [`super::Router::param_names`] lists them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Params {
    inline: [(u32, u32); PARAMS_INLINE],
    inline_len: usize,
    spill: Vec<(u32, u32)>,
}

impl Params {
    /// Appends the next parameter. The router only captures from paths shorter than
    /// `u32::MAX` bytes, so the casts are exact.
    pub(super) fn push(&mut self, range: Range<usize>) {
        debug_assert!(range.end <= u32::MAX as usize);
        let pair = (range.start as u32, range.end as u32);
        if self.inline_len < PARAMS_INLINE {
            self.inline[self.inline_len] = pair;
            self.inline_len += 1;
        } else {
            self.spill.push(pair);
        }
    }

    /// Number of captured parameters.
    pub fn len(&self) -> usize {
        self.inline_len + self.spill.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The byte range in the request path of the route's `index`-th parameter.
    pub fn get(&self, index: usize) -> Option<Range<usize>> {
        let &(start, end) = if index < self.inline_len {
            &self.inline[index]
        } else {
            self.spill.get(index - self.inline_len)?
        };
        Some(start as usize..end as usize)
    }

    /// All parameter ranges, in pattern order.
    pub fn iter(&self) -> impl Iterator<Item = Range<usize>> + '_ {
        self.inline[..self.inline_len]
            .iter()
            .chain(self.spill.iter())
            .map(|&(start, end)| start as usize..end as usize)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inline_then_spill() {
        let mut params = Params::default();
        assert!(params.is_empty());
        for i in 0..PARAMS_INLINE + 2 {
            params.push(i * 10..i * 10 + 3);
        }
        assert_eq!(params.len(), PARAMS_INLINE + 2);
        assert_eq!(params.get(0), Some(0..3));
        assert_eq!(params.get(PARAMS_INLINE + 1), Some(90..93));
        assert_eq!(params.get(PARAMS_INLINE + 2), None);
        assert_eq!(params.iter().count(), PARAMS_INLINE + 2);
        assert_eq!(params.iter().nth(PARAMS_INLINE), Some(80..83));
    }
}
