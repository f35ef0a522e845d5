"""Runs survive kills, bad files and failed jobs (issue 28).

* A real training process is SIGKILLed at random instants across many checkpoint saves; every resume
  continues from a complete checkpoint with exactly the numbers of an uninterrupted run, never a mix.
* Truncated, corrupt, foreign or mismatched checkpoints are refused with a named error naming the file.
* Sweeps keep their finished results when jobs fail, and a partial sweep on disk resumes.
* Stored results are written atomically, carry a schema version, and loaders name the file and the field.

The trainer here is a tiny :class:`marabook.plumbing.TrainLoop` (a two-layer MLP regression), so that a
save takes milliseconds and a kill lands in the middle of one most of the time. Run as a script, this file
is the "zygote" the kill test forks its training processes from (torch imported once, not per process).
"""
from __future__ import annotations

import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from marabook import checkpoints, plumbing  # noqa: E402
from marabook.checkpoints import CheckpointError  # noqa: E402
from marabook.plumbing import TrainLoop  # noqa: E402


@dataclass
class TinyConfig:
    steps: int = 40
    seed: int = 0
    lr: float = 1e-2
    width: int = 96


class TinyLoop(TrainLoop):
    """A regression MLP trained with Adam on fresh random batches from the trainer's generator."""

    def __init__(self, config: TinyConfig, *, checkpoint_dir=None, checkpoint_every: int = 0, task: str = "sine",
                 init_seed: int | None = None, needs_metrics: bool = False):
        self._init_loop(checkpoint_dir, checkpoint_every, progress=False)
        self.config, self.task, self.needs_metrics = config, task, needs_metrics
        self.device = torch.device("cpu")
        g = torch.Generator().manual_seed(config.seed if init_seed is None else init_seed)
        w = config.width
        self.model = torch.nn.Sequential(torch.nn.Linear(w, w), torch.nn.Tanh(), torch.nn.Linear(w, 1))
        with torch.no_grad():
            for p in self.model.parameters():
                p.copy_(torch.randn(p.shape, generator=g) * 0.1)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=config.lr)
        self.generator = torch.Generator().manual_seed(config.seed + 1)
        self._resume_if_checkpointed()

    @property
    def position(self) -> int:
        return self.step

    @property
    def end(self) -> int:
        return self.config.steps

    def _identity(self) -> dict:
        return {"task": {"name": self.task, "fingerprint": checkpoints.settings_fingerprint({"task": self.task})}}

    def _check_before_step(self) -> None:
        if self.needs_metrics:
            raise ValueError("task must have a metrics method")

    def train_step(self) -> dict:
        x = torch.randn(32, self.config.width, generator=self.generator)
        y = torch.sin(x.sum(1, keepdim=True))
        loss = torch.nn.functional.mse_loss(self.model(x), y)
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()
        self.step += 1
        entry = {"step": self.step, "loss": float(loss.detach()), "weights": weights_hash(self.model)}
        self.history.append(entry)
        return entry


def weights_hash(model) -> str:
    h = hashlib.sha256()
    for name, p in model.state_dict().items():
        h.update(name.encode() + p.detach().contiguous().numpy().tobytes())
    return h.hexdigest()


# ------------------------------------------------------------------------------------ the kill test
def _zygote() -> None:
    """Forks one training process per command read from stdin (torch is imported and warmed up once, here:
    the first optimiser step imports and initialises a lot, which would otherwise be most of each run)."""
    torch.set_num_threads(1)
    TinyLoop(TinyConfig(steps=1, width=8)).train()
    print("ready", flush=True)
    for line in sys.stdin:
        cmd, *args = line.split()
        if cmd == "quit":
            return
        if cmd == "wait":
            _, status = os.waitpid(int(args[0]), 0)
            print(f"status {status}", flush=True)
            continue
        pid = os.fork()
        if pid == 0:  # the training process: a fresh run or a resume, to the end, saving every step
            code = 0
            try:
                steps, target = int(args[0]), args[1]
                if cmd == "ref":
                    t = TinyLoop(TinyConfig(steps=steps))
                    t.train()
                    Path(target).write_text(json.dumps(t.history))
                else:
                    TinyLoop(TinyConfig(steps=steps), checkpoint_dir=target, checkpoint_every=1).train()
            except BaseException as exc:  # noqa: BLE001 - reported to the test, which fails on it
                print(f"child error {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
                code = 3
            os._exit(code)
        print(f"pid {pid}", flush=True)


class Zygote:
    def __init__(self):
        env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(Path(__file__).resolve().parents[1])] + sys.path))
        self.proc = subprocess.Popen([sys.executable, __file__, "zygote"], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True, env=env)
        self.ready = False

    def ask(self, line: str) -> str:
        if not self.ready:
            assert self.proc.stdout.readline().strip() == "ready"
            self.ready = True
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()
        return self.proc.stdout.readline().strip()

    def start(self, cmd: str, steps: int, target) -> int:
        answer = self.ask(f"{cmd} {steps} {target}")
        assert answer.startswith("pid "), answer
        return int(answer.split()[1])

    def wait(self, pid: int) -> int:
        return int(self.ask(f"wait {pid}").split()[1])

    def close(self):
        try:
            self.proc.stdin.write("quit\n")
            self.proc.stdin.flush()
            self.proc.wait(timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            self.proc.kill()
            self.proc.wait()


def test_sigkill_at_random_instants_never_leaves_a_mixed_checkpoint(tmp_path):
    steps, rounds = 40, 24
    rng = random.Random(int(os.environ.get("MARABOOK_KILL_SEED", "0")) or None)
    zyg = Zygote()
    try:
        TinyLoop(TinyConfig(steps=1, width=8)).train()  # warms this process up while the zygote starts
        pid = zyg.start("ref", steps, tmp_path / "ref.json")
        assert zyg.wait(pid) == 0
        ref = json.loads((tmp_path / "ref.json").read_text())
        assert len(ref) == steps
        ck = tmp_path / "ck"
        t0 = time.perf_counter()
        pid = zyg.start("run", steps, ck)
        assert zyg.wait(pid) == 0
        whole = time.perf_counter() - t0      # an uninterrupted run, saving every step
        ck_full = json.loads((ck / "state.json").read_text())
        assert ck_full["history"] == ref       # checkpointing does not change the numbers
        for p in ck.iterdir():
            p.unlink()

        positions, mid_save, killed, last = [], 0, 0, 0
        for _ in range(rounds):
            pid = zyg.start("run", steps, ck)
            time.sleep(rng.uniform(0.0, whole * 0.5))
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            status = zyg.wait(pid)
            killed += os.WIFSIGNALED(status)
            assert os.WIFSIGNALED(status) or os.WEXITSTATUS(status) == 0, f"training process failed: {status}"
            names = {p.name for p in ck.iterdir()}
            if (ck / "state.json").exists():
                record = json.loads((ck / "state.json").read_text())
                mid_save += bool(names - set(record["files"].values()) - {"state.json"})
            # the resume: a complete checkpoint with exactly the uninterrupted run's numbers, or a fresh start
            t = TinyLoop(TinyConfig(steps=steps), checkpoint_dir=ck)
            assert t.history == ref[: t.step]
            if t.step:
                assert weights_hash(t.model) == ref[t.step - 1]["weights"]
            assert t.step >= last, "a resume never goes back behind a checkpoint it saw complete"
            positions.append(t.step)
            last = t.step
            if t.step == steps:  # finished before the kill: start again
                for p in ck.iterdir():
                    p.unlink()
                last = 0
        assert killed >= rounds // 2, "the kills should mostly land before the run ends"
        assert mid_save >= 1, "some kills should land in the middle of a save"
        assert len(set(positions)) > 3, positions
        print(f"kill test: {killed} kills, {mid_save} mid-save, whole run {whole:.2f} s, resumed at {positions}")
        # and a run killed any number of times ends exactly where the uninterrupted one does
        t = TinyLoop(TinyConfig(steps=steps), checkpoint_dir=ck)
        t.train()
        assert t.history == ref
        assert weights_hash(t.model) == ref[-1]["weights"]
    finally:
        zyg.close()


# ------------------------------------------------------------------------------------ bad checkpoints
@pytest.fixture
def saved(tmp_path):
    ck = tmp_path / "ck"
    t = TinyLoop(TinyConfig(steps=3, width=8), checkpoint_dir=ck, checkpoint_every=1)
    t.train()
    return ck, checkpoints.checkpoint_files(ck)


def _fresh(ck, **kw):
    return TinyLoop(TinyConfig(steps=3, width=8), checkpoint_dir=ck, **kw)


def test_a_checkpoint_is_one_record_and_the_files_it_names(saved):
    ck, files = saved
    assert sorted(p.name for p in ck.iterdir()) == sorted(p.name for p in files.values())
    record = json.loads(files["record"].read_text())
    assert record["format"] == checkpoints.CHECKPOINT_FORMAT and record["step"] == 3
    assert set(record["identity"]) == {"start_weights", "task"}
    t = _fresh(ck)
    assert t.step == 3 and len(t.history) == 3


@pytest.mark.parametrize("damage, match", [
    ("truncate_record", "state.json: not a readable checkpoint record"),
    ("truncate_model", r"model-.*\.safetensors: \d+ bytes, the checkpoint record says"),
    ("flip_state", r"state-.*\.safetensors: contents differ"),
    ("remove_model", r"model-.*\.safetensors: missing"),
    ("format", r"state.json: checkpoint format 99"),
    ("no_history", r"state.json: checkpoint record has no 'history'"),
    ("not_a_dict", r"state.json: not a marabook checkpoint record"),
])
def test_damaged_checkpoints_are_refused_naming_the_file(saved, damage, match):
    ck, files = saved
    record = json.loads(files["record"].read_text())
    if damage == "truncate_record":
        files["record"].write_text(files["record"].read_text()[:100])
    elif damage == "truncate_model":
        files["model"].write_bytes(files["model"].read_bytes()[:-10])
    elif damage == "flip_state":
        b = bytearray(files["state"].read_bytes())
        b[-1] ^= 0xFF
        files["state"].write_bytes(bytes(b))
    elif damage == "remove_model":
        files["model"].unlink()
    elif damage == "format":
        files["record"].write_text(json.dumps(dict(record, format=99)))
    elif damage == "no_history":
        files["record"].write_text(json.dumps({k: v for k, v in record.items() if k != "history"}))
    else:
        files["record"].write_text("[1, 2]")
    with pytest.raises(CheckpointError, match=match):
        _fresh(ck)


def test_a_checkpoint_of_another_run_is_refused_naming_both_sides(saved):
    ck, _ = saved
    with pytest.raises(CheckpointError, match=r"task differs \(checkpoint .*'sine'.*this run .*'cosine'"):
        _fresh(ck, task="cosine")
    with pytest.raises(CheckpointError, match="start weights|weights as the trainer was built"):
        _fresh(ck, init_seed=5)                       # another model with the same config
    with pytest.raises(CheckpointError, match=r"different config \(lr: checkpoint 0.01, this run 0.1\)"):
        TinyLoop(TinyConfig(steps=3, width=8, lr=0.1), checkpoint_dir=ck)


def test_a_refused_load_leaves_the_trainer_as_it_was(saved):
    ck, files = saved
    t = TinyLoop(TinyConfig(steps=3, width=8))
    before = weights_hash(t.model)
    files["state"].write_bytes(b"\0" * 5)
    with pytest.raises(CheckpointError, match="state-"):
        t.load_checkpoint(ck)
    assert t.step == 0 and t.history == [] and weights_hash(t.model) == before


def test_format_1_checkpoints_still_load_and_are_replaced_cleanly(saved, tmp_path):
    ck, files = saved
    old = tmp_path / "old"
    old.mkdir()
    record = json.loads(files["record"].read_text())
    (old / "model.safetensors").write_bytes(files["model"].read_bytes())
    (old / "state.safetensors").write_bytes(files["state"].read_bytes())
    v1 = {k: record[k] for k in ("trainer", "config", "step", "history", "optimizer", "extra")}
    (old / "state.json").write_text(json.dumps(dict(v1, format=1)))
    t = _fresh(old, checkpoint_every=1)
    assert t.step == 3 and t.history == record["history"]
    t.save_checkpoint(old)
    assert not (old / "model.safetensors").exists()   # the new checkpoint replaced the old layout
    assert _fresh(old).history == record["history"]


def test_checkpoint_dir_is_checked_before_training(tmp_path):
    f = tmp_path / "a_file"
    f.write_text("x")
    with pytest.raises(ValueError, match="checkpoint_dir .* is not a directory"):
        TinyLoop(TinyConfig(), checkpoint_dir=f)
    with pytest.raises(ValueError, match="checkpoint_dir .* cannot be created"):
        TinyLoop(TinyConfig(), checkpoint_dir=f / "sub")
    with pytest.raises(ValueError, match="checkpoint_dir must be a path"):
        TinyLoop(TinyConfig(), checkpoint_dir=3)


def test_leftovers_of_a_killed_save_are_ignored_then_removed(saved):
    ck, files = saved
    (ck / "model-00000009-deadbeef.safetensors").write_bytes(b"half")
    (ck / "state.json.00000009-deadbeef.tmp").write_text("{")
    t = _fresh(ck, checkpoint_every=1)
    assert t.step == 3
    t.save_checkpoint(ck)
    assert sorted(p.name for p in ck.iterdir()) == sorted(p.name for p in checkpoints.checkpoint_files(ck).values())


def test_bad_input_is_refused_before_the_first_step(tmp_path):
    t = TinyLoop(TinyConfig(steps=2, width=8), needs_metrics=True, checkpoint_dir=tmp_path / "ck")
    before = weights_hash(t.model)
    with pytest.raises(ValueError, match="metrics"):
        t.train()
    assert t.step == 0 and t.history == [] and weights_hash(t.model) == before
    assert not (tmp_path / "ck" / "state.json").exists()


def test_a_counter_already_spent_is_refused():
    class Spent(TinyLoop):
        unit = "call"

        @property
        def position(self):
            return 16

    with pytest.raises(ValueError, match="already made 16 calls"):
        Spent(TinyConfig())


def test_fingerprints():
    a = TinyLoop(TinyConfig(width=8))
    b = TinyLoop(TinyConfig(width=8))
    assert checkpoints.module_fingerprint(a.model) == checkpoints.module_fingerprint(b.model)
    a.train(until=1)
    assert checkpoints.module_fingerprint(a.model) != checkpoints.module_fingerprint(b.model)
    assert checkpoints.settings_fingerprint({"f": weights_hash, "x": [1, 2]}) == \
        checkpoints.settings_fingerprint({"x": (1, 2), "f": weights_hash})
    assert checkpoints.settings_fingerprint({"x": 1}) != checkpoints.settings_fingerprint({"x": 2})


if __name__ == "__main__" and sys.argv[1:] == ["zygote"]:
    _zygote()


# ------------------------------------------------------------------------------------ sweeps
def _maybe_fail(x):
    if x in (2, 4):
        raise RuntimeError(f"job {x} broke")
    return {"x": x, "square": x * x}


def _count_calls(job):
    x, log = job
    with open(log, "a") as f:
        f.write(f"{x}\n")
    return _maybe_fail(x)


@pytest.mark.parametrize("how", ["here", "threads", "processes"])
def test_a_failing_job_loses_nothing_else(how):
    from concurrent.futures import ThreadPoolExecutor

    from marabook.experiments.sweep import JobFailure, SweepError, run_sweep

    kw = {"here": {}, "processes": {"workers": 2}}.get(how, {})
    pool = ThreadPoolExecutor(2) if how == "threads" else None
    try:
        out = run_sweep(_maybe_fail, range(6), executor=pool, progress=False, **kw)
        assert [r["square"] for r in out.finished] == [0, 1, 9, 25]
        fails = out.failures
        assert [(f.index, f.job, f.error, f.message) for f in fails] == \
            [(2, 2, "RuntimeError", "job 2 broke"), (4, 4, "RuntimeError", "job 4 broke")]
        assert isinstance(out[2], JobFailure) and out[3] == {"x": 3, "square": 9}
        assert "job 2 broke" in fails[0].traceback
        assert out.summary()["failed"] == 2 and out.summary()["finished"] == 4
        if how == "processes":  # spawning workers costs seconds: raise_on_error is the same code path
            return
        with pytest.raises(SweepError, match=r"2 of 6 sweep jobs failed(.|\n)*job 2 2: RuntimeError: job 2 broke"
                                             r"(.|\n)*job 4 4: RuntimeError: job 4 broke") as info:
            run_sweep(_maybe_fail, range(6), executor=pool, progress=False, raise_on_error=True, **kw)
        assert len(info.value.results.finished) == 4       # raised after every job ran, results kept
    finally:
        if pool is not None:
            pool.shutdown()


def test_a_partial_sweep_on_disk_resumes(tmp_path):
    from marabook.experiments.sweep import SweepError, run_sweep

    store, log = tmp_path / "store", tmp_path / "calls.txt"
    jobs = [(x, str(log)) for x in range(6)]
    first = run_sweep(_count_calls, jobs, progress=False, store=store)
    assert len(first.failures) == 2 and len(list(store.iterdir())) == 4   # finished jobs stored, failures not
    again = run_sweep(_count_calls, jobs, progress=False, store=store)
    calls = [int(x) for x in log.read_text().split()]
    assert calls == [0, 1, 2, 3, 4, 5, 2, 4]             # the rerun ran only the jobs that had failed
    assert again.finished == first.finished
    # a store belongs to one sweep: other arguments for a stored job are refused by name
    with pytest.raises(ValueError, match=r"job-00000\.json holds job 0 of another sweep"):
        run_sweep(_count_calls, [(10, str(log))], progress=False, store=store)
    (store / "job-00001.json").write_text('{"schema": 1')
    with pytest.raises(ValueError, match=r"job-00001\.json is not readable JSON"):
        run_sweep(_count_calls, jobs, progress=False, store=store)
    (store / "job-00001.json").write_text('{"schema": 1}')
    with pytest.raises(ValueError, match=r"job-00001\.json has no 'index' field"):
        run_sweep(_count_calls, jobs, progress=False, store=store)
    with pytest.raises(ValueError, match="store .* is not a directory"):
        run_sweep(_count_calls, jobs, progress=False, store=log)
    with pytest.raises(ValueError, match="raise_on_error"):
        run_sweep(_count_calls, jobs, progress=False, raise_on_error=1)
    with pytest.raises(ValueError, match="result of job 0 is not JSON"):
        run_sweep(lambda x: object(), [0], progress=False, store=tmp_path / "s2")
    with pytest.raises(SweepError):
        run_sweep(_count_calls, jobs, progress=False, raise_on_error=True, store=tmp_path / "s3")


# ------------------------------------------------------------------------------------ stored results
def test_results_files_are_written_atomically_and_checked(tmp_path, monkeypatch):
    from marabook import provenance as P

    path = tmp_path / "r.json"
    P.save_json(path, {"runs": [1]}, command="x")
    data = json.loads(path.read_text())
    assert data["schema"] == P.RESULTS_SCHEMA and data["results"] == {"runs": [1]}
    assert P.load_json(path, required=("runs",))["results"]["runs"] == [1]
    assert [p.name for p in tmp_path.iterdir()] == ["r.json"]        # no temporary file left behind

    # a write that dies half way leaves the previous file whole
    def dies(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(P.os, "replace", dies)
    with pytest.raises(KeyboardInterrupt):
        P.save_json(path, {"runs": [2]}, command="x")
    monkeypatch.undo()
    assert P.load_json(path)["results"]["runs"] == [1]
    assert [p.name for p in tmp_path.iterdir()] == ["r.json"]

    with pytest.raises(P.ResultsFileError, match=r"r\.json \(results\): no 'advantage' field"):
        P.load_json(path, required=("advantage",))
    path.write_text(path.read_text()[:30])
    with pytest.raises(P.ResultsFileError, match=r"r\.json: not a readable results file"):
        P.load_json(path)
    path.write_text(json.dumps({"schema": 7, "provenance": {}, "results": {}}))
    with pytest.raises(P.ResultsFileError, match=r"r\.json: results schema 7"):
        P.load_json(path)
    with pytest.raises(P.ResultsFileError, match=r"here\[3\]: no 'method' field"):
        P.need({"runs": 1}, "runs", "method", where="here[3]")
    with pytest.raises(ValueError, match="results must be JSON"):
        P.save_json(tmp_path / "o.json", {"a": object()}, command="x")
    assert not (tmp_path / "o.json").exists()


def test_shipped_results_without_a_schema_still_load():
    from marabook import provenance as P

    for path in sorted(P.RESULTS_DIR.glob("*.json")):
        data = P.load_json(path)
        assert data.get("schema", 1) == P.RESULTS_SCHEMA


def test_console_commands_write_to_results_not_into_the_package():
    import argparse
    import inspect

    from marabook import provenance as P
    from marabook.experiments import molecules, onetwo, open_ended, tokens

    assert P.default_out("x.json") == str(Path("results") / "x.json")
    for mod in (tokens, onetwo, open_ended, molecules):
        src = inspect.getsource(mod)
        assert "RESULTS_DIR /" not in src, mod.__name__
    ap = molecules._grid_parser("d", ("product",), "reinvent.json")
    assert isinstance(ap, argparse.ArgumentParser)
    assert ap.parse_args([]).out == str(Path("results") / "reinvent.json")


def test_no_shipped_file_records_a_machine_path():
    import re

    from marabook import provenance as P

    root = Path(P.__file__).resolve().parent / "data"
    pattern = re.compile(r'(^|[\s"=])/(tmp|home|root|work|Users|mnt|opt|var|private)/')
    offenders = [str(p.relative_to(root)) for p in root.rglob("*.json")
                 if p.stat().st_size < 5_000_000 and pattern.search(p.read_text(errors="replace"))]
    assert offenders == []
    # and what records commands from now on keeps them out
    repo = Path(P.__file__).resolve().parents[1]
    cmd = f"python {repo}/scripts/run_tokens.py --out /tmp/x/tokens.json --work=/home/me/w --seeds 2"
    assert P.portable_command(cmd) == "python scripts/run_tokens.py --out tokens.json --work=w --seeds 2"
    assert P.provenance(cmd)["command"] == P.portable_command(cmd)
