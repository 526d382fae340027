//! `[train] packing`: a step's examples are packed into rows of up to `data.max_seq_len`
//! input tokens, so short examples share a row instead of each padding to the longest one.
//! Each example keeps its own positions and attends only to itself
//! ([`augur_model::StepInput::packed`]), and the loss mask is the examples' own, so the
//! step's loss and gradient are those of the unpacked step.
//!
//! Rows are filled first-fit in order of decreasing length (ties: the earlier example), which
//! is deterministic and wastes little of each row.

use super::data::Example;

/// Splits `examples` into rows of at most `capacity` input tokens each (an example's input is
/// its `ids` but the last). An example longer than `capacity` gets a row of its own.
pub fn pack_rows<'a>(examples: &[&'a Example], capacity: usize) -> Vec<Vec<&'a Example>> {
    let input_len = |e: &Example| e.ids.len() - 1;
    let mut order: Vec<usize> = (0..examples.len()).collect();
    order.sort_by(|&a, &b| {
        input_len(examples[b])
            .cmp(&input_len(examples[a]))
            .then(a.cmp(&b))
    });
    let mut rows: Vec<(usize, Vec<&Example>)> = Vec::new();
    for i in order {
        let e = examples[i];
        let n = input_len(e);
        match rows.iter_mut().find(|(used, _)| used + n <= capacity) {
            Some((used, row)) => {
                *used += n;
                row.push(e);
            }
            None => rows.push((n, vec![e])),
        }
    }
    rows.into_iter().map(|(_, row)| row).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn example(len: usize) -> Example {
        Example {
            ids: vec![1; len + 1],
            trainable: vec![true; len + 1],
            truncated: false,
        }
    }

    #[test]
    fn rows_are_filled_first_fit_by_decreasing_length() {
        let ex: Vec<Example> = [3, 7, 2, 5, 4, 9].into_iter().map(example).collect();
        let refs: Vec<&Example> = ex.iter().collect();
        let rows = pack_rows(&refs, 10);
        let lens: Vec<Vec<usize>> = rows
            .iter()
            .map(|r| r.iter().map(|e| e.ids.len() - 1).collect())
            .collect();
        // 9 | 7+3 | 5+4 | 2 goes into the first row with room (9 + 2 > 10, 10 full, 9 + 2 > 10).
        assert_eq!(lens, vec![vec![9], vec![7, 3], vec![5, 4], vec![2]]);
        // Every example once; no row over capacity.
        assert_eq!(rows.iter().map(Vec::len).sum::<usize>(), ex.len());
        assert!(lens.iter().all(|r| r.iter().sum::<usize>() <= 10));
        // An example over the capacity gets a row of its own.
        let long = [example(12), example(1)];
        let refs: Vec<&Example> = long.iter().collect();
        assert_eq!(pack_rows(&refs, 10).len(), 2);
    }
}
