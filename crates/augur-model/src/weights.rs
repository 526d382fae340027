//! Where weights come from: HF safetensors (single or sharded) or a GGUF file.
//!
//! Both sources answer requests by HF tensor name and check the shape, so the
//! model builder is written once against the HF layout.

use std::collections::HashMap;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use candle_core::quantized::{gguf_file, GgmlDType, QStorage, QTensor};
use candle_core::{DType, Device, Tensor};

use safetensors as st;

use crate::error::{ModelError, Result};
use crate::linear::BaseWeight;

/// A provider of named tensors in HF naming.
pub trait TensorSource {
    /// The file(s) the tensors come from, for error messages.
    fn path(&self) -> &Path;
    /// Whether a tensor with this HF name exists.
    fn has(&self, name: &str) -> bool;
    /// Loads a tensor as a dense `dtype` tensor of the given shape.
    fn dense(&mut self, name: &str, shape: &[usize], dtype: DType) -> Result<Tensor>;
    /// Loads a linear weight, keeping it quantized when asked and possible.
    fn linear(
        &mut self,
        name: &str,
        shape: &[usize],
        dtype: DType,
        keep_quantized: bool,
    ) -> Result<BaseWeight> {
        let _ = keep_quantized;
        Ok(BaseWeight::Dense(self.dense(name, shape, dtype)?))
    }
}

fn check_shape(path: &Path, name: &str, got: &[usize], want: &[usize]) -> Result<()> {
    if got != want {
        return Err(ModelError::tensor(
            path,
            name,
            format!("shape {got:?}, expected {want:?} from config.json"),
        ));
    }
    Ok(())
}

/// Safetensors weights, one file or the shards listed in `model.safetensors.index.json`,
/// read tensor by tensor.
///
/// Why not a memory map: every mapped page a tensor is copied from stays resident until the
/// map is dropped at the end of the load, so a 2 GB checkpoint peaked at the file's size on
/// top of the built model (4.7 GB for Qwen2.5-0.5B). Positioned reads into a buffer that is
/// freed after conversion keep the peak at the model plus one tensor.
pub struct SafetensorsSource {
    files: Vec<File>,
    /// `files[i]`'s path, for error messages.
    paths: Vec<PathBuf>,
    tensors: HashMap<String, StoredTensor>,
    label: PathBuf,
    device: Device,
}

/// Where one tensor's bytes lie: its file (an index into `SafetensorsSource::files`) and its
/// header entry.
struct StoredTensor {
    file: usize,
    entry: HeaderEntry,
}

impl SafetensorsSource {
    /// Opens `model.safetensors` or the sharded index in `dir`, reading only the headers.
    pub fn open_dir(dir: &Path, device: &Device) -> Result<Self> {
        let single = dir.join("model.safetensors");
        let index = dir.join("model.safetensors.index.json");
        let (paths, label) = if single.exists() {
            (vec![single.clone()], single)
        } else if index.exists() {
            (shard_paths(&index)?, index)
        } else {
            return Err(ModelError::Checkpoint {
                path: dir.to_path_buf(),
                problem: "no model.safetensors or model.safetensors.index.json".into(),
            });
        };
        let mut files = Vec::with_capacity(paths.len());
        let mut tensors = HashMap::new();
        for (i, path) in paths.iter().enumerate() {
            if !path.exists() {
                return Err(ModelError::Checkpoint {
                    path: path.clone(),
                    problem: "shard listed in the index is missing".into(),
                });
            }
            let mut file = File::open(path).map_err(|source| ModelError::Io {
                path: path.clone(),
                source,
            })?;
            for (name, entry) in read_header(&mut file, path)? {
                if tensors
                    .insert(name.clone(), StoredTensor { file: i, entry })
                    .is_some()
                {
                    return Err(ModelError::tensor(
                        path,
                        &name,
                        "appears in more than one shard",
                    ));
                }
            }
            files.push(file);
        }
        Ok(SafetensorsSource {
            files,
            paths,
            tensors,
            label,
            device: device.clone(),
        })
    }
}

/// One tensor's entry in a safetensors header, with its offset made absolute.
struct HeaderEntry {
    dtype: st::Dtype,
    shape: Vec<usize>,
    /// Absolute byte offset of the data in the file.
    offset: u64,
    len: usize,
}

/// Headers larger than this are refused (the format's own limit is 100 MB).
const MAX_HEADER_BYTES: u64 = 100_000_000;

/// Reads and checks a safetensors header: an 8-byte little-endian length, then JSON. Every
/// tensor's byte range must lie inside the file.
fn read_header(file: &mut File, path: &Path) -> Result<Vec<(String, HeaderEntry)>> {
    let bad = |problem: String| ModelError::Checkpoint {
        path: path.into(),
        problem,
    };
    let io = |source| ModelError::Io {
        path: path.into(),
        source,
    };
    let file_len = file.metadata().map_err(io)?.len();
    let mut len_bytes = [0u8; 8];
    file.read_exact(&mut len_bytes)
        .map_err(|e| bad(format!("not a safetensors file (no header length): {e}")))?;
    let header_len = u64::from_le_bytes(len_bytes);
    if header_len > MAX_HEADER_BYTES || 8 + header_len > file_len {
        return Err(bad(format!(
            "not a safetensors file: header length {header_len} for a {file_len}-byte file"
        )));
    }
    let mut header = vec![0u8; header_len as usize];
    file.read_exact(&mut header).map_err(io)?;
    let metadata: st::tensor::Metadata = serde_json::from_slice(&header)
        .map_err(|e| bad(format!("unreadable safetensors header: {e}")))?;
    let data_start = 8 + header_len;
    let mut entries = Vec::new();
    for (name, info) in metadata.tensors() {
        let (start, end) = info.data_offsets;
        if start > end || data_start.saturating_add(end as u64) > file_len {
            return Err(ModelError::tensor(
                path,
                &name,
                format!(
                    "data offsets {start}..{end} do not fit a {file_len}-byte file after its {header_len}-byte header"
                ),
            ));
        }
        entries.push((
            name,
            HeaderEntry {
                dtype: info.dtype,
                shape: info.shape.clone(),
                offset: data_start + start as u64,
                len: end - start,
            },
        ));
    }
    Ok(entries)
}

/// The shard files `index` maps tensors to, each once, sorted; every name must stay inside the
/// model folder.
fn shard_paths(index: &Path) -> Result<Vec<PathBuf>> {
    let text = std::fs::read_to_string(index).map_err(|source| ModelError::Io {
        path: index.into(),
        source,
    })?;
    let json: serde_json::Value =
        serde_json::from_str(&text).map_err(|source| ModelError::Json {
            path: index.into(),
            source,
        })?;
    let map = json
        .get("weight_map")
        .and_then(|m| m.as_object())
        .ok_or_else(|| ModelError::field(index, "weight_map", "missing or not an object"))?;
    let dir = index.parent().unwrap_or(Path::new("."));
    let mut files = Vec::with_capacity(map.len());
    for (tensor, shard) in map {
        let field = format!("weight_map.{tensor}");
        let shard = shard
            .as_str()
            .ok_or_else(|| ModelError::field(index, &field, "not a file name"))?;
        if shard.contains("..") || Path::new(shard).is_absolute() {
            return Err(ModelError::field(
                index,
                &field,
                format!("shard {shard:?} leaves the model folder"),
            ));
        }
        files.push(dir.join(shard));
    }
    files.sort();
    files.dedup();
    Ok(files)
}

impl TensorSource for SafetensorsSource {
    fn path(&self) -> &Path {
        &self.label
    }

    fn has(&self, name: &str) -> bool {
        self.tensors.contains_key(name)
    }

    fn dense(&mut self, name: &str, shape: &[usize], dtype: DType) -> Result<Tensor> {
        let stored = self
            .tensors
            .get(name)
            .ok_or_else(|| ModelError::tensor(&self.label, name, "not in the checkpoint"))?;
        let (path, entry) = (&self.paths[stored.file], &stored.entry);
        check_shape(path, name, &entry.shape, shape)?;
        let stored_dtype = DType::try_from(entry.dtype)
            .map_err(|e| ModelError::tensor(path, name, format!("cannot load: {e}")))?;
        let mut bytes = vec![0u8; entry.len];
        let mut file = &self.files[stored.file];
        file.seek(SeekFrom::Start(entry.offset))
            .and_then(|_| file.read_exact(&mut bytes))
            .map_err(|e| ModelError::tensor(path, name, format!("cannot read: {e}")))?;
        let t = Tensor::from_raw_buffer(&bytes, stored_dtype, shape, &self.device)
            .map_err(|e| ModelError::tensor(path, name, format!("cannot load: {e}")))?;
        drop(bytes);
        Ok(t.to_dtype(dtype)?)
    }
}

/// A GGUF file (llama.cpp format), read with candle's reader.
pub struct GgufSource {
    pub content: gguf_file::Content,
    file: File,
    path: PathBuf,
    device: Device,
    /// llama.cpp permutes Q/K rows of Llama-arch models for its interleaved RoPE;
    /// `(q heads, kv heads)` when that must be undone.
    unpermute: Option<(usize, usize)>,
}

impl GgufSource {
    /// Opens and parses the header; tensors are read lazily.
    pub fn open(path: &Path, device: &Device) -> Result<Self> {
        let mut file = File::open(path).map_err(|source| ModelError::Io {
            path: path.into(),
            source,
        })?;
        let content = crate::gguf_header::read_content(&mut file, path)?;
        Ok(GgufSource {
            content,
            file,
            path: path.into(),
            device: device.clone(),
            unpermute: None,
        })
    }

    /// Enables undoing llama.cpp's Q/K permutation (Llama arch only; Qwen GGUFs are not permuted).
    pub fn set_unpermute(&mut self, heads: usize, kv_heads: usize) {
        self.unpermute = Some((heads, kv_heads));
    }

    fn qtensor(&mut self, hf_name: &str, shape: &[usize]) -> Result<QTensor> {
        let name = gguf_name(hf_name).ok_or_else(|| {
            ModelError::tensor(&self.path, hf_name, "no GGUF equivalent for this tensor")
        })?;
        if !self.content.tensor_infos.contains_key(&name) {
            return Err(ModelError::tensor(
                &self.path,
                &name,
                "missing from the GGUF file",
            ));
        }
        let q = self
            .content
            .tensor(&mut self.file, &name, &self.device)
            .map_err(|e| {
                ModelError::tensor(
                    &self.path,
                    &name,
                    format!("cannot read (truncated file?): {e}"),
                )
            })?;
        check_shape(&self.path, &name, q.shape().dims(), shape)?;
        match (self.unpermute, hf_name) {
            (Some((h, _)), n) if n.ends_with("q_proj.weight") || n.ends_with("q_proj.bias") => {
                unpermute_rows(&q, h)
            }
            (Some((_, kv)), n) if n.ends_with("k_proj.weight") || n.ends_with("k_proj.bias") => {
                unpermute_rows(&q, kv)
            }
            _ => Ok(q),
        }
    }
}

impl TensorSource for GgufSource {
    fn path(&self) -> &Path {
        &self.path
    }

    fn has(&self, name: &str) -> bool {
        gguf_name(name).is_some_and(|n| self.content.tensor_infos.contains_key(&n))
    }

    fn dense(&mut self, name: &str, shape: &[usize], dtype: DType) -> Result<Tensor> {
        let q = self.qtensor(name, shape)?;
        Ok(q.dequantize(&self.device)?.to_dtype(dtype)?)
    }

    fn linear(
        &mut self,
        name: &str,
        shape: &[usize],
        dtype: DType,
        keep_quantized: bool,
    ) -> Result<BaseWeight> {
        let q = self.qtensor(name, shape)?;
        let float = matches!(q.dtype(), GgmlDType::F32 | GgmlDType::F16 | GgmlDType::BF16);
        if keep_quantized && !float {
            Ok(BaseWeight::Quantized(Arc::new(q)))
        } else {
            Ok(BaseWeight::Dense(
                q.dequantize(&self.device)?.to_dtype(dtype)?,
            ))
        }
    }
}

/// Maps an HF tensor name to llama.cpp's GGUF name.
pub fn gguf_name(hf: &str) -> Option<String> {
    match hf {
        "model.embed_tokens.weight" => return Some("token_embd.weight".into()),
        "model.norm.weight" => return Some("output_norm.weight".into()),
        "lm_head.weight" => return Some("output.weight".into()),
        _ => {}
    }
    let rest = hf.strip_prefix("model.layers.")?;
    let (layer, rest) = rest.split_once('.')?;
    let (module, suffix) = rest.rsplit_once('.')?;
    let gguf = match module {
        "self_attn.q_proj" => "attn_q",
        "self_attn.k_proj" => "attn_k",
        "self_attn.v_proj" => "attn_v",
        "self_attn.o_proj" => "attn_output",
        "self_attn.q_norm" => "attn_q_norm",
        "self_attn.k_norm" => "attn_k_norm",
        "mlp.gate_proj" => "ffn_gate",
        "mlp.up_proj" => "ffn_up",
        "mlp.down_proj" => "ffn_down",
        "input_layernorm" => "attn_norm",
        "post_attention_layernorm" => "ffn_norm",
        _ => return None,
    };
    Some(format!("blk.{layer}.{gguf}.{suffix}"))
}

/// Undoes llama.cpp's `reshape(heads, 2, d/2, in).swapaxes(1, 2)` row permutation.
///
/// Rows are permuted as whole quantization rows (blocks run along the input
/// dimension), so this works on quantized data without dequantizing.
fn unpermute_rows(q: &QTensor, heads: usize) -> Result<QTensor> {
    let dims = q.shape().dims().to_vec();
    let rows = dims[0];
    let head_dim = rows / heads;
    let half = head_dim / 2;
    let data = q.data()?;
    let row_bytes = data.len() / rows;
    let mut out = vec![0u8; data.len()];
    for h in 0..heads {
        for s in 0..2 {
            for j in 0..half {
                let hf_row = h * head_dim + s * half + j;
                let gguf_row = h * head_dim + 2 * j + s;
                out[hf_row * row_bytes..(hf_row + 1) * row_bytes]
                    .copy_from_slice(&data[gguf_row * row_bytes..(gguf_row + 1) * row_bytes]);
            }
        }
    }
    let storage = QStorage::from_data(std::borrow::Cow::Owned(out), &q.device(), q.dtype())?;
    Ok(QTensor::new(storage, dims)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Saves `tensors` with candle's writer as two shards and an index, as HF does.
    fn write_shards(dir: &Path, tensors: &[(&str, Tensor)]) {
        let (a, b) = tensors.split_at(tensors.len() / 2);
        let mut weight_map = serde_json::Map::new();
        for (file, part) in [("s-1.safetensors", a), ("s-2.safetensors", b)] {
            let map: HashMap<String, Tensor> = part
                .iter()
                .map(|(n, t)| (n.to_string(), t.clone()))
                .collect();
            candle_core::safetensors::save(&map, dir.join(file)).unwrap();
            for (n, _) in part {
                weight_map.insert(n.to_string(), file.into());
            }
        }
        let index = serde_json::json!({ "weight_map": weight_map });
        std::fs::write(dir.join("model.safetensors.index.json"), index.to_string()).unwrap();
    }

    #[test]
    fn sharded_reads_match_candles_loader() -> Result<()> {
        let dir = tempfile::tempdir().unwrap();
        let dev = Device::Cpu;
        let f32s = Tensor::arange(0f32, 24., &dev)?.reshape((4, 6))?;
        let bf16s = Tensor::arange(-3f32, 5., &dev)?.to_dtype(DType::BF16)?;
        let tensors = [
            ("a.weight", f32s),
            ("b.weight", bf16s),
            ("c.bias", Tensor::ones(3, DType::F32, &dev)?),
        ];
        write_shards(dir.path(), &tensors);
        let mut src = SafetensorsSource::open_dir(dir.path(), &dev)?;
        for (name, t) in &tensors {
            assert!(src.has(name));
            // Independent reference: candle's own reader of the shard the tensor is in.
            let file = if *name == "a.weight" {
                "s-1.safetensors"
            } else {
                "s-2.safetensors"
            };
            let want = candle_core::safetensors::load(dir.path().join(file), &dev)?[*name]
                .to_dtype(DType::F32)?;
            let got = src.dense(name, t.dims(), DType::F32)?;
            assert_eq!(
                got.flatten_all()?.to_vec1::<f32>()?,
                want.flatten_all()?.to_vec1::<f32>()?
            );
        }
        assert!(!src.has("missing.weight"));
        let err = src
            .dense("missing.weight", &[1], DType::F32)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("missing.weight") && err.contains("not in the checkpoint"),
            "{err}"
        );
        let err = src
            .dense("a.weight", &[6, 4], DType::F32)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("s-1.safetensors") && err.contains("a.weight"),
            "{err}"
        );
        Ok(())
    }

    #[test]
    fn a_tensor_in_two_shards_and_a_short_file_are_named_errors() -> Result<()> {
        let dir = tempfile::tempdir().unwrap();
        let dev = Device::Cpu;
        let t = Tensor::ones((2, 2), DType::F32, &dev)?;
        let shards = [
            ("x", t.clone()),
            ("y", t.clone()),
            ("x", t.clone()),
            ("z", t.clone()),
        ];
        write_shards(dir.path(), &shards);
        let err = SafetensorsSource::open_dir(dir.path(), &dev)
            .err()
            .unwrap()
            .to_string();
        assert!(
            err.contains("s-2.safetensors") && err.contains("more than one shard"),
            "{err}"
        );

        let single = dir.path().join("model.safetensors");
        let map: HashMap<String, Tensor> = [("w".to_string(), t)].into();
        candle_core::safetensors::save(&map, &single).unwrap();
        let bytes = std::fs::read(&single).unwrap();
        std::fs::write(&single, &bytes[..bytes.len() - 4]).unwrap();
        let err = SafetensorsSource::open_dir(dir.path(), &dev)
            .err()
            .unwrap()
            .to_string();
        assert!(
            err.contains("model.safetensors: tensor `w`: data offsets"),
            "{err}"
        );
        Ok(())
    }

    #[test]
    fn an_index_entry_that_is_not_a_file_inside_the_folder_is_a_named_error() {
        let dir = tempfile::tempdir().unwrap();
        let index = dir.path().join("model.safetensors.index.json");
        for (entry, want) in [
            (r#""a.weight": 3"#, "field `weight_map.a.weight`: not a file name"),
            (
                r#""a.weight": "../outside.safetensors""#,
                "field `weight_map.a.weight`: shard \"../outside.safetensors\" leaves the model folder",
            ),
        ] {
            std::fs::write(&index, format!(r#"{{"weight_map": {{{entry}}}}}"#)).unwrap();
            let err = SafetensorsSource::open_dir(dir.path(), &Device::Cpu)
                .err()
                .unwrap()
                .to_string();
            assert!(
                err.contains("model.safetensors.index.json") && err.contains(want),
                "{err}"
            );
        }
    }

    #[test]
    fn maps_hf_names_to_gguf() {
        assert_eq!(
            gguf_name("model.layers.3.self_attn.q_proj.bias").unwrap(),
            "blk.3.attn_q.bias"
        );
        assert_eq!(
            gguf_name("model.layers.0.post_attention_layernorm.weight").unwrap(),
            "blk.0.ffn_norm.weight"
        );
        assert_eq!(
            gguf_name("model.embed_tokens.weight").unwrap(),
            "token_embd.weight"
        );
        assert!(gguf_name("model.layers.0.mystery.weight").is_none());
    }

    #[test]
    fn unpermute_inverts_llama_cpp_permutation() -> Result<()> {
        // 2 heads of dim 4, 3 input features; rows numbered so the permutation is visible.
        let (heads, hd, inp) = (2usize, 4usize, 3usize);
        let hf: Vec<f32> = (0..heads * hd * inp).map(|v| v as f32).collect();
        // llama.cpp: w.reshape(heads, 2, hd/2, in).swapaxes(1, 2)
        let mut gguf = vec![0f32; hf.len()];
        for h in 0..heads {
            for s in 0..2 {
                for j in 0..hd / 2 {
                    let src = h * hd + s * (hd / 2) + j;
                    let dst = h * hd + j * 2 + s;
                    gguf[dst * inp..(dst + 1) * inp]
                        .copy_from_slice(&hf[src * inp..(src + 1) * inp]);
                }
            }
        }
        let t = Tensor::from_vec(gguf, (heads * hd, inp), &Device::Cpu)?;
        let q = QTensor::quantize(&t, GgmlDType::F32)?;
        let back = unpermute_rows(&q, heads)?.dequantize(&Device::Cpu)?;
        assert_eq!(back.flatten_all()?.to_vec1::<f32>()?, hf);
        Ok(())
    }
}
