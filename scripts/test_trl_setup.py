"""Tests of scripts/trl_setup.py's reward (the part that needs no torch): the completion's last
number against the answer, for plain and chat completions. Runs with `python3 scripts/test_trl_setup.py`."""

import sys
import unittest
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from trl_setup import last_number_reward  # noqa: E402


class LastNumberReward(unittest.TestCase):
    def test_the_last_number_decides(self):
        completions = ["7 + 5 = 12", "it is 1,234.", "12 or 13", "no number", [{"role": "assistant", "content": "-3"}]]
        answers = ["12", "1234", "12", "0", "-3.0"]
        self.assertEqual(last_number_reward(completions, answers), [1.0, 1.0, 0.0, 0.0, 1.0])

    def test_a_non_numeric_answer_scores_zero(self):
        self.assertEqual(last_number_reward(["5"], ["five"]), [0.0])


if __name__ == "__main__":
    unittest.main()
