//! Per-sequence key/value cache. Each sequence owns one `SequenceCache` (one `LayerCache` per
//! layer), so the engine can hold many sequences of different lengths and free one the moment it
//! ends. Buffers grow in blocks of `BLOCK` positions and are written in place, so a decode step
//! copies one position per layer instead of the whole history.

use candle_core::{Result, Tensor};

/// Positions added at a time when a layer's buffer is full.
const BLOCK: usize = 256;

#[derive(Default)]
pub struct LayerCache {
    /// [1, n_kv_heads, capacity, head_dim]; the first `len` positions are valid.
    k: Option<Tensor>,
    v: Option<Tensor>,
    len: usize,
}

impl LayerCache {
    /// Forgets every position from `len` on (the buffers are kept for reuse).
    pub fn truncate(&mut self, len: usize) {
        self.len = self.len.min(len);
    }

    /// The whole key and value buffers, [1, n_kv_heads, capacity, head_dim] each, and how many
    /// of their first positions are valid (for kernels that read the cache in place); None
    /// before the first append.
    pub fn buffers(&self) -> Option<(&Tensor, &Tensor, usize)> {
        Some((self.k.as_ref()?, self.v.as_ref()?, self.len))
    }

    /// Appends `k`, `v` ([1, n_kv_heads, new, head_dim]) and returns every cached position,
    /// [1, n_kv_heads, len + new, head_dim] each (views into the buffers).
    pub fn append(&mut self, k: &Tensor, v: &Tensor) -> Result<(Tensor, Tensor)> {
        let new = k.dim(2)?;
        let needed = self.len + new;
        let capacity = self.k.as_ref().map_or(Ok(0), |t| t.dim(2))?;
        if needed > capacity {
            let capacity = needed.div_ceil(BLOCK) * BLOCK;
            self.k = Some(grow(self.k.as_ref(), k, self.len, capacity)?);
            self.v = Some(grow(self.v.as_ref(), v, self.len, capacity)?);
        }
        let (kb, vb) = (self.k.as_ref().unwrap(), self.v.as_ref().unwrap());
        kb.slice_set(&k.contiguous()?, 2, self.len)?;
        vb.slice_set(&v.contiguous()?, 2, self.len)?;
        self.len = needed;
        Ok((kb.narrow(2, 0, needed)?, vb.narrow(2, 0, needed)?))
    }
}

impl LayerCache {
    /// An independent copy of the valid positions (buffers are written in place, so sharing
    /// them between two sequences would let one overwrite the other's positions).
    pub fn fork(&self) -> Result<LayerCache> {
        let copy = |t: &Option<Tensor>| -> Result<Option<Tensor>> {
            t.as_ref()
                .map(|t| grow(Some(t), t, self.len, t.dim(2)?))
                .transpose()
        };
        Ok(LayerCache {
            k: copy(&self.k)?,
            v: copy(&self.v)?,
            len: self.len,
        })
    }
}

/// A buffer of `capacity` positions holding the first `len` positions of `old`.
fn grow(old: Option<&Tensor>, like: &Tensor, len: usize, capacity: usize) -> Result<Tensor> {
    let (b, heads, _, head_dim) = like.dims4()?;
    let buffer = Tensor::zeros((b, heads, capacity, head_dim), like.dtype(), like.device())?;
    if let Some(old) = old {
        buffer.slice_set(&old.narrow(2, 0, len)?.contiguous()?, 2, 0)?;
    }
    Ok(buffer)
}

/// The cache of one sequence: every layer's keys and values for its positions so far.
pub struct SequenceCache {
    pub layers: Vec<LayerCache>,
    len: usize,
}

impl SequenceCache {
    pub fn new(num_layers: usize) -> Self {
        SequenceCache {
            layers: (0..num_layers).map(|_| LayerCache::default()).collect(),
            len: 0,
        }
    }

    /// Positions cached so far (the position of the next token).
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Forgets every position from `len` on, in every layer.
    pub fn truncate(&mut self, len: usize) {
        for layer in self.layers.iter_mut() {
            layer.truncate(len);
        }
        self.len = self.len.min(len);
    }

    /// An independent copy, for a sequence that branches (a beam continued two ways).
    pub fn fork(&self) -> Result<SequenceCache> {
        Ok(SequenceCache {
            layers: self
                .layers
                .iter()
                .map(LayerCache::fork)
                .collect::<Result<_>>()?,
            len: self.len,
        })
    }

    /// Records that a forward pass cached `n` more positions in every layer.
    pub fn advance(&mut self, n: usize) {
        self.len += n;
    }
}

/// A finished sequence's cache kept for a session: `cache` holds the keys and values of `tokens`.
pub struct CachedPrefix {
    pub tokens: Vec<u32>,
    pub cache: SequenceCache,
}

impl CachedPrefix {
    /// How many leading positions of `prompt` the cache can serve, leaving at least one token
    /// of the prompt to run (its logits choose the first new token).
    pub fn reusable_for(&self, prompt: &[u32]) -> usize {
        let common = self
            .tokens
            .iter()
            .zip(prompt)
            .take_while(|(a, b)| a == b)
            .count();
        common.min(prompt.len().saturating_sub(1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Tensor};

    #[test]
    fn appends_grow_in_blocks_and_truncation_rewinds() {
        let mut layer = LayerCache::default();
        let kv = |n: usize, value: f32| Tensor::full(value, (1, 2, n, 4), &Device::Cpu).unwrap();
        let (k, _) = layer.append(&kv(300, 1.0), &kv(300, 1.0)).unwrap();
        assert_eq!(k.dims(), [1, 2, 300, 4]);
        layer.truncate(10);
        let (k, v) = layer.append(&kv(1, 5.0), &kv(1, 5.0)).unwrap();
        assert_eq!(k.dims(), [1, 2, 11, 4]);
        let last: Vec<f32> = v
            .narrow(2, 10, 1)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        assert!(last.iter().all(|&x| x == 5.0));
    }

    #[test]
    fn a_fork_is_independent_of_its_parent() {
        let kv = |n: usize, value: f32| Tensor::full(value, (1, 2, n, 4), &Device::Cpu).unwrap();
        let mut parent = LayerCache::default();
        parent.append(&kv(3, 1.0), &kv(3, 1.0)).unwrap();
        let mut child = parent.fork().unwrap();
        let (_, v_child) = child.append(&kv(1, 7.0), &kv(1, 7.0)).unwrap();
        let (_, v_parent) = parent.append(&kv(1, 2.0), &kv(1, 2.0)).unwrap();
        let last = |v: &Tensor| -> Vec<f32> {
            v.narrow(2, 3, 1)
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1()
                .unwrap()
        };
        assert!(last(&v_child).iter().all(|&x| x == 7.0));
        assert!(last(&v_parent).iter().all(|&x| x == 2.0));
    }

    #[test]
    fn a_prefix_serves_all_but_the_last_prompt_token() {
        let prefix = CachedPrefix {
            tokens: vec![1, 2, 3, 4],
            cache: SequenceCache::new(1),
        };
        assert_eq!(prefix.reusable_for(&[1, 2, 9]), 2);
        assert_eq!(prefix.reusable_for(&[1, 2, 3, 4]), 3);
        assert_eq!(prefix.reusable_for(&[1, 2, 3, 4, 5, 6]), 4);
        assert_eq!(prefix.reusable_for(&[7]), 0);
    }
}
