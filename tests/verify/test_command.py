"""`rollwise verify` through rollwise.cli.main: items given or generated, JSONL, errors."""

import io
import json

import pytest

from rollwise.cli import main

COUNTDOWN = json.dumps({"question": "Make 30", "answer": "(6+4)*3", "metadata": {"numbers": [3, 4, 6], "target": 30}})


def rows(capsys) -> list[dict]:
    return [json.loads(line) for line in capsys.readouterr().out.splitlines()]


def test_countdown_item_from_json(tmp_path, capsys):
    answers = tmp_path / "answers.txt"
    answers.write_text("(6 + 4) * 3\n6 * 5\n__import__('os').system('touch CANARY')\n")
    assert main(["verify", str(answers), "--task", "countdown", "--item", COUNTDOWN]) == 0
    out = rows(capsys)
    assert [r["acc"] for r in out] == [True, False, False]
    assert [r["reward"] for r in out] == [1.0, 0.05, 0.01]
    assert out[0] == {"answer": "(6 + 4) * 3", "acc": True, "reward": 1.0, "error": ""}


def test_generated_item_and_jsonl(tmp_path, capsys):
    import reasoning_gym

    reference = reasoning_gym.create_dataset("basic_arithmetic", size=4, seed=11)[3]["answer"]
    answers = tmp_path / "answers.jsonl"
    lines = [{"answer": reference, "id": "a"}, {"answer": "nope", "id": 7}, {"answer": None}, {"answer": "x" * 20_000}]
    answers.write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    assert main(["verify", str(answers), "--task", "basic_arithmetic", "--seed", "11", "--index", "3"]) == 0
    out = rows(capsys)
    assert [r["acc"] for r in out] == [True, False, False, False]
    assert out[0]["id"] == "a" and out[1]["id"] == 7 and "id" not in out[2]
    assert out[3]["error"] == "rejected" and out[3]["answer_truncated"]


def test_stdin_file_item_math_and_extract(tmp_path, monkeypatch, capsys):
    item = tmp_path / "item.json"
    item.write_text(json.dumps({"prompt": "half?", "answer": "1/2"}))
    stdin = b"so it is <answer>0.5</answer>\nthe result is 3\n\xff\xfe\n"
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(stdin)))
    assert main(["verify", "--item", str(item), "--extract", "--workers", "1"]) == 0
    out = rows(capsys)
    assert [(r["answer"], r["acc"]) for r in out[:2]] == [("0.5", True), ("3", False)]
    assert out[2]["answer"] is None  # no answer in undecodable bytes


def test_invalid_utf8_answer_is_rejected(tmp_path, capsys):
    answers = tmp_path / "answers.txt"
    answers.write_bytes(b"12\n\xff\xfe12\n")
    assert main(["verify", str(answers), "--item", '{"answer": "12"}', "--verifier", "exact"]) == 0
    out = rows(capsys)
    assert out[0]["acc"] and out[1]["error"] == "rejected"


@pytest.mark.parametrize("argv,message", [
    (["--item", "{not json"], "--item: not valid JSON"),
    (["--item", '{"question": "q"}'], "missing key 'answer'"),
    (["--item", "missing.json"], "neither a JSON object nor an existing file"),
    ([], "give the item"),
    (["--task", "no_such_task"], "unknown task 'no_such_task'"),
    (["--task", "basic_arithmetic", "--task-options", "[1]"], "--task-options: expected a JSON object"),
    (["--task", "basic_arithmetic", "--task-options", '{"max_terms": 0}'], "reasoning-gym task 'basic_arithmetic'"),
    (["--item", '{"answer": "1"}', "--timeout", "0"], "timeout > 0"),
])
def test_bad_input_is_one_clear_line(tmp_path, capsys, argv, message):
    answers = tmp_path / "answers.txt"
    answers.write_text("1\n")
    assert main(["verify", str(answers), *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and err.startswith("rollwise: error:") and "\n" not in err


def test_missing_answers_file(capsys):
    assert main(["verify", "no/such/answers.txt", "--item", '{"answer": "1"}']) == 2
    assert "no such file of answers" in capsys.readouterr().err
