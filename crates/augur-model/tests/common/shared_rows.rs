//! The shared-prefix fixture: rows continuing two prompts, run either in full (prompt +
//! continuation) or as continuations of the shared prompts, on a fixture model with LoRA
//! adapters on every target.

use augur_model::{DecoderModel, StepInput};
use candle_core::{DType, Device, Tensor, Var};

use super::{attach_lora_everywhere, fixture_model};

/// The shared prompts, of different lengths.
pub const PROMPTS: [&[u32]; 2] = [&[5, 9, 200, 17], &[44, 12]];
/// (prompt, continuation) per row: continuations of different lengths, rows of one prompt not
/// adjacent.
pub const ROWS: [(usize, &[u32]); 4] = [(0, &[3, 8]), (1, &[9, 10, 11]), (0, &[77]), (1, &[1])];
/// The longest continuation: the logits kept per row (`LogitsAt::Tail(WIDTH)`).
pub const WIDTH: usize = 3;

/// The rows in full (prompt + continuation), left-padded.
pub fn full_rows() -> StepInput {
    let full: Vec<Vec<u32>> = ROWS
        .iter()
        .map(|(p, c)| [PROMPTS[*p], *c].concat())
        .collect();
    StepInput::left_padded(&full, 0, &Device::Cpu).unwrap()
}

/// The rows as continuations of the shared prompts: the prompts' input, each row's prompt
/// index, and the continuations' input (positions starting after their prompt).
pub fn prefixed_rows() -> (StepInput, Vec<usize>, StepInput) {
    let dev = Device::Cpu;
    let prefixes = StepInput::left_padded(&PROMPTS.map(<[u32]>::to_vec), 0, &dev).unwrap();
    let of_row: Vec<usize> = ROWS.iter().map(|(p, _)| *p).collect();
    let continuations: Vec<Vec<u32>> = ROWS.iter().map(|(_, c)| c.to_vec()).collect();
    let starts: Vec<u32> = ROWS.iter().map(|(p, _)| PROMPTS[*p].len() as u32).collect();
    let input = StepInput::left_padded_from(&continuations, &starts, 0, &dev).unwrap();
    (prefixes, of_row, input)
}

/// The fixture model `arch` with rank-2 adapters on every target, each `lora_B` (zero at
/// attach) set to `b(index of the var, the var)` in `dtype`, so the adapters matter and every
/// adapter gets a gradient through the next.
pub fn adapted(arch: &str, dtype: DType, b: impl Fn(usize, &Var) -> Tensor) -> DecoderModel {
    let mut model = fixture_model(arch, dtype);
    attach_lora_everywhere(&mut model, 2, 3);
    for (i, (name, var)) in model.lora_vars().into_iter().enumerate() {
        if name.ends_with("lora_B.weight") {
            var.set(&b(i, &var).to_dtype(dtype).unwrap()).unwrap();
        }
    }
    model
}
