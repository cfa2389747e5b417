"""The main job, end to end: web pool -> curated shards -> pretrained backbones -> five-task probe table.

Each step is one of the project's own commands (``python -m curation|pretrain|heads ...``) run as a
subprocess, so every step can also be run alone with the same outputs. A step whose outputs already
exist is not redone (delete its folder to redo it). The last step writes ``OUT/summary.html``, which
links the shard report, the loss curves, the probe table and prediction overlays; every number on
it is read from a file the run wrote, named beside it.

    humans --out runs/main                              # the same, as the installed `humans` command
    python tools/main_job.py --out runs/main            # the README's first command runs this
    python tools/main_job.py --out /tmp/x --preset tiny # the smallest chain (the test runs this)
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
OBJECTIVES = ("mae", "cl", "mae+cl")
TASKS = ("pose", "seg", "normal", "pointmap", "albedo")


@dataclass(frozen=True)
class Preset:
    """Sizes of every step; ``demo`` is the README's default, ``study`` the three-seed comparison,
    ``tiny`` the test's, ``study-gpu`` the same study at a scale for one GPU."""

    pool_scale: str
    model: str                  # the study backbone (plain ViT, 8 px patches; see `humans-pretrain models`)
    unlabelled_count: int       # synthetic humans rendered WITHOUT labels for pretraining
    unlabelled_size: int
    pretrain_steps: int
    pretrain_batch: int
    embedder_steps: int         # the curation embedder's cl run (on the unlabelled humans, before curation)
    global_size: int
    local_size: int
    n_local: int
    prototypes: int
    synth_count: int            # labelled synthetic humans for the probes and heads (another seed)
    synth_size: int
    probe_size: str             # input of the dense probes (whole images)
    head_epochs: int            # epochs of every head ...
    # input of the five heads, the pose head's person crops too: at 128x96 (a 16x12 token grid) the pose head
    # reaches PCK@0.1 0.505 +- 0.004 against 0.471 +- 0.003 on 64x48 crops (8x6 tokens), hands above the mean
    # pose, for 70 s more (600 images, 3 head seeds, benchmarks/results/heads.md)
    head_size: str
    seeds: tuple[int, ...] = (0,)
    threads: int = 2
    device: str = "cpu"
    extra_pretrain: list[str] = field(default_factory=list)
    # weight of the CL loss in the mae+cl arm (total = MAE + lam * CL; the cl arm ignores it). lam 1 let an
    # immature CL term (its loss still near log K after 600 CPU steps) hold the MAE loss up (0.41 vs 0.35
    # alone) and the features back; 0.1 was best of 1 / 0.3 / 0.1 on seed 0 (benchmarks/results/study.md)
    mae_cl_lam: float = 0.1
    # labelled synthetic humans the heads train on (generator seed 2000, none shared with the probes' set),
    # scored on every image of the probes' set; 0: the heads train on 80 % of the probes' set and are scored
    # on the rest. Data, not epochs, limits the heads: 192 -> 1152 training images at the same step count
    # took normals from 33.5 to 32.1 deg without the overfitting more epochs bring (main_job.md)
    head_synth_count: int = 0
    # ... except these (task -> epochs). The seg head is under-trained at 12 epochs: on the demo's data 36 took it
    # from mIoU 0.097 +- 0.002 to 0.119 +- 0.002 and boundary F1 0.347 -> 0.392 (3 head seeds, heads.md), for about
    # 100 s more of the job; normals and pointmap over-fit beyond 12
    head_task_epochs: dict = field(default_factory=dict)
    # also train the five heads on the random-init backbone (OUT/heads_random), the baseline beside them on the
    # summary page; off in the demo for its 20-minute budget (they take about as long as the heads themselves)
    head_baselines: bool = False
    # heads that train on only the first N of the head_synth_count images (task -> N). Four times the images at a
    # quarter of the epochs (the same steps) lift the seg head from mIoU 0.119 to 0.153 and boundary F1 0.392 to
    # 0.441 and normals 32.6 -> 32.3 deg, while the pose head stays level (0.504 vs 0.505) and its person crops
    # cost 110 s more features: the demo's pose head keeps 600 (heads.md)
    head_task_images: dict = field(default_factory=dict)

    def epochs_of(self, task: str) -> int:
        """Training epochs of the ``task`` head."""
        return int(self.head_task_epochs.get(task, self.head_epochs))

    def images_of(self, task: str) -> int:
        """Labelled images the ``task`` head trains on (0: the probes' set, split)."""
        return min(int(self.head_task_images.get(task, self.head_synth_count)), self.head_synth_count)

    def head_order(self) -> list[str]:
        """The five heads, longest first (samples seen; the pose head's 308 heatmaps take about twice a dense
        head's time per sample), so that two lanes finish close together."""
        return sorted(TASKS, key=lambda t: -self.epochs_of(t) * max(self.images_of(t), 1) * (2 if t == "pose" else 1))

    @property
    def pose_crop_size(self) -> str:
        """Person crops of the pose probe at the pretraining view size: a person shown at the scale the
        backbone learned from (at ``probe_size`` a crop shows them about twice as large). The pose head, a
        trained decoder, does better on ``head_size`` crops (a finer token grid)."""
        return f"{self.global_size}x{self.global_size * 3 // 4}"


_STUDY = dict(pool_scale="demo", model="study-s8", unlabelled_count=1500, unlabelled_size=96, pretrain_steps=200,
              pretrain_batch=32, embedder_steps=100, global_size=64, local_size=32, n_local=2, prototypes=1024, synth_count=240,
              synth_size=128, probe_size="128x96", head_epochs=12, head_size="128x96",
              extra_pretrain=["--warmup-steps", "20", "--lr", "2e-3", "--num-workers", "1"])
PRESETS = {
    # the heads see as many samples as 600 images at 12 epochs (seg 36), from 2400 images; pose from 600
    "demo": Preset(**{**_STUDY, "head_synth_count": 2400, "head_epochs": 3, "head_task_epochs": {"seg": 9, "pose": 12},
                      "head_task_images": {"pose": 600}}),
    # three times the demo's pretraining: MAE's gain over random grows with steps (study.md)
    # heads on the probes' set: the study's claims are the probes', and its 75 minutes have no room for more
    "study": Preset(**{**_STUDY, "seeds": (0, 1, 2), "pretrain_steps": 600}),
    "study-gpu": Preset(**{**_STUDY, "model": "study-m8", "unlabelled_count": 20000, "unlabelled_size": 128,
                           "pretrain_steps": 3000, "pretrain_batch": 128, "embedder_steps": 1000, "global_size": 96, "local_size": 48,
                           "n_local": 4, "prototypes": 4096, "synth_count": 1000, "head_epochs": 20,
                           "seeds": (0, 1, 2), "threads": 8, "device": "cuda",
                           "extra_pretrain": ["--warmup-steps", "200", "--lr", "1e-3", "--num-workers", "6"]}),
    "tiny": Preset(pool_scale="small", model="study-s8", unlabelled_count=48, unlabelled_size=64, pretrain_steps=6,
                   pretrain_batch=4, embedder_steps=4, global_size=32, local_size=16, n_local=2, prototypes=256, synth_count=24,
                   synth_size=96, probe_size="64x48", head_epochs=1, head_size="64x48", head_synth_count=32,
                   head_task_images={"pose": 16},
                   extra_pretrain=["--warmup-steps", "2", "--log-every", "1", "--num-workers", "0"]),
}


def with_head_epochs(preset: Preset, spec: str) -> Preset:
    """``preset`` with the head epochs of ``--head-epochs`` ``spec``: comma-separated items, each N (every head,
    the preset's per-task counts included) or TASK=N (that head; wins over a bare N in the same spec)."""
    every, per_task = None, {}
    for item in (part.strip() for part in str(spec).split(",")):
        task, _, value = item.rpartition("=")
        if task and task not in TASKS:
            raise ValueError(f"--head-epochs {spec}: task {task!r}; allowed {', '.join(TASKS)}")
        try:
            n = int(value)
        except ValueError:
            n = 0
        if n < 1:
            raise ValueError(f"--head-epochs {spec}: {item!r}; allowed N or TASK=N with N >= 1")
        if task:
            per_task[task] = n
        else:
            every = n
    if every is None:
        return dataclasses.replace(preset, head_task_epochs={**preset.head_task_epochs, **per_task})
    return dataclasses.replace(preset, head_epochs=every, head_task_epochs=per_task)


def with_head_images(preset: Preset, n: int) -> Preset:
    """``preset`` with every head on ``n`` labelled humans (``--head-images``) and each head's epochs scaled so it
    sees as many samples as the preset gives it, at least one epoch: about the same time, spread over other data
    (demo: 600 gives the seg head 36 epochs and the others 12, 9600 gives seg 2 and the others 1)."""
    from humans.heads.config import HeadConfig

    held_out = HeadConfig.model_fields["val_frac"].default  # without 5c the heads split the probes' set

    def base(task: str) -> int:  # the preset's training images of the head
        return preset.images_of(task) or max(1, round((1 - held_out) * preset.synth_count))

    epochs = {t: max(1, round(preset.epochs_of(t) * base(t) / n)) for t in TASKS}
    return dataclasses.replace(preset, head_synth_count=n, head_task_images={}, head_task_epochs=epochs)


def log(msg: str) -> None:
    print(f"[main-job {time.strftime('%H:%M:%S')}] {msg}", flush=True)


IN_PROCESS = False  # set by --in-process: call each command's main() here instead of a subprocess


def step_env(**extra: str) -> dict[str, str]:
    """The environment of a step's subprocess: this one's, with the checkout on PYTHONPATH, plus ``extra``."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return env | extra


def run(cmd: list[str], marker: Path, desc: str, light: bool = False) -> None:
    """Run one step (``python -m PKG ARGS...``) unless ``marker`` exists; stop the job on failure.
    ``light`` steps (a few seconds of work: exports, scores, pictures, predictions) run in this process
    whatever ``--in-process`` says: a subprocess would spend most of their time starting Python and torch."""
    if marker.exists():
        log(f"skip  {desc}: {marker} exists")
        return
    log(f"start {desc}: python {' '.join(cmd)}")
    t0 = time.time()
    if (IN_PROCESS or light) and cmd[0] == "-m":
        import importlib

        try:
            code = importlib.import_module(f"{cmd[1]}.cli").main(cmd[2:]) or 0
        except SystemExit as exc:  # argparse and friends
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        except Exception as exc:  # noqa: BLE001 - reported as the step's failure, as a subprocess's would be
            log(f"error in {desc}: {type(exc).__name__}: {exc}")
            code = 1
    else:
        code = subprocess.run([sys.executable, *cmd], cwd=ROOT, env=step_env()).returncode
    if code != 0:
        raise SystemExit(f"[main-job] step '{desc}' failed with exit code {code}; "
                         f"fix the cause and rerun: finished steps are kept")
    log(f"done  {desc} in {time.time() - t0:.0f} s")


LANES = 1  # set by --lanes: independent heavy steps run this many at a time (run_lanes)


@dataclass(frozen=True)
class Step:
    """One heavy step for ``run_lanes``: its command, the file that marks it done, its description and the
    name of its log file."""

    cmd: list[str]
    marker: Path
    desc: str
    name: str


def lane_threads(p: Preset) -> int:
    """Threads of each step that runs beside others: the preset's threads shared among the lanes."""
    return max(1, p.threads // LANES)


def run_lanes(jobs: list[Step], log_dir: Path) -> None:
    """Run independent steps up to ``LANES`` at a time, in the order given (longest first packs best), each a
    subprocess whose output goes to ``log_dir/NAME.log``; with one lane or ``--in-process`` they run one
    after another through ``run``. A step whose marker exists is skipped. When a step fails, the running
    ones finish (their outputs stay usable on the rerun), no new one starts, and the job stops naming the
    failed step and the tail of its log.

    Why lanes: at these model sizes a step gains little from its second thread (a CL pretraining step 1.3x,
    an MAE step 1.07x, a head 1.4-1.8x on 2 cores), so two one-thread steps side by side finish sooner than
    the same steps one after another on two threads each (benchmarks/results/main_job.md)."""
    if LANES <= 1 or IN_PROCESS:
        for job in jobs:
            run(job.cmd, job.marker, job.desc)
        return
    pending = []
    for job in jobs:
        if job.marker.exists():
            log(f"skip  {job.desc}: {job.marker} exists")
        else:
            pending.append(job)
    log_dir.mkdir(parents=True, exist_ok=True)
    # bars of steps side by side would interleave; each step logs to its file
    env = step_env(HUMANS_NO_PROGRESS="1")
    running: dict[subprocess.Popen, tuple[Step, float, Path]] = {}
    failed: list[tuple[Step, int, Path]] = []
    try:
        while running or (pending and not failed):
            while pending and len(running) < LANES and not failed:
                job = pending.pop(0)
                path = log_dir / f"{job.name}.log"
                log(f"start {job.desc} (beside others; log {path}): python {' '.join(job.cmd)}")
                with open(path, "w") as fh:
                    proc = subprocess.Popen([sys.executable, *job.cmd], cwd=ROOT, env=env, stdout=fh,
                                            stderr=subprocess.STDOUT)
                running[proc] = (job, time.time(), path)
            time.sleep(0.2)
            for proc in [q for q in running if q.poll() is not None]:
                job, t0, path = running.pop(proc)
                if proc.returncode == 0:
                    log(f"done  {job.desc} in {time.time() - t0:.0f} s")
                else:
                    log(f"error in {job.desc}: exit code {proc.returncode}; its log {path} ends:\n"
                        + "\n".join(path.read_text(errors="replace").splitlines()[-15:]))
                    failed.append((job, proc.returncode, path))
    finally:
        for proc in running:  # interrupted (Ctrl-C): stop what still runs; resumable steps keep their progress
            proc.terminate()
    if failed:
        job, code, path = failed[0]
        raise SystemExit(f"[main-job] step '{job.desc}' failed with exit code {code} (log {path}); "
                         f"fix the cause and rerun: finished steps are kept")


def py(*args: str) -> list[str]:
    return list(args)


def local_layout(threads: int) -> list[str]:
    """Ray resources for curating on this one machine: a person-detector actor on every core beside one
    half-CPU filter task (decode and quality cost a few per cent of detection). The `humans` defaults
    reserve a whole CPU for filter tasks, which on 2 cores leaves one detector and one idle core."""
    per_actor = (threads - 0.5) / threads
    return ["--set", "filter_resources.num_cpus=0.5", "--set", f"person.resources.concurrency={threads}",
            "--set", f"person.resources.num_cpus={per_actor:.4g}"]


def steps(out: Path, p: Preset) -> dict[str, Path]:
    """Run every step; returns the paths the summary reads."""
    pool, shards, report = out / "pool", out / "shards", out / "report"
    run(py("-m", "humans.curation", "demo-pool", "--out", str(pool), "--scale", p.pool_scale),
        pool / "labels.parquet", "1. demo web pool", light=True)
    unlabelled = out / "unlabelled"
    run(py("-m", "humans.shared.synth", "--out", str(unlabelled), "--images-only", "--count",
           str(p.unlabelled_count), "--size", str(p.unlabelled_size), "--seed", "1000", "--threads", str(p.threads)),
        unlabelled / "manifest.json", "1b. unlabelled synthetic humans for pretraining (no labels)")
    embedder = pretrain_embedder(out, p, unlabelled)
    run(py("-m", "humans.curation", "run", "--pipeline", "humans", "--input", str(pool / "images"),
           "--out", str(shards), "--threads", str(p.threads), "--embedding-backbone", str(embedder),
           *local_layout(p.threads)),
        shards / "manifest.json", "2. six curation stages on a local Ray instance (embedding dedup: our backbone)")
    run(py("-m", "humans.curation", "score", str(shards), "--pool", str(pool), "--json", str(out / "scores.json")),
        out / "scores.json", "2b. score every stage against the pool's labels", light=True)
    run(py("-m", "humans.curation", "report", str(shards), "--out", str(report)),
        report / "index.html", "3a. shard report", light=True)
    verify_log = out / "verify.txt"
    if not verify_log.exists():
        log("start 3b. verify shards")
        proc = subprocess.run([sys.executable, "-m", "humans.curation", "verify", str(shards)], cwd=ROOT,
                              capture_output=True, text=True)
        sys.stdout.write(proc.stdout + proc.stderr)
        if proc.returncode != 0:
            raise SystemExit(f"[main-job] shard verification failed:\n{proc.stdout}{proc.stderr}")
        verify_log.write_text(proc.stdout + proc.stderr)

    data = out / "synth"
    run(py("-m", "humans.shared.synth", "--out", str(data), "--count", str(p.synth_count), "--size", str(p.synth_size),
           "--threads", str(p.threads)), data / "meta.json", "5. labelled synthetic humans (probes and heads only)")
    run(py("-m", "humans.shared.synth", "--out", str(data / "preview"), "--count", "8", "--size", str(p.synth_size),
           "--preview"), data / "preview" / "meta.json", "5b. synthetic preview sheet", light=True)
    head_data, head_val = head_images(out, p, data)

    probe_jsons: dict[int, Path] = {}
    all_backbones: dict[int, dict[str, Path]] = {}
    for seed in p.seeds:
        backbones = pretrain_arms(out, p, shards, unlabelled, seed)
        all_backbones[seed] = backbones
        sfx = "" if seed == 0 else f"_seed{seed}"
        probe_json = out / f"probe{sfx}.json"
        probe_backbones(out, p, backbones, data, probe_json, out / f"probe{sfx}.md", seed)
        probe_jsons[seed] = probe_json
    study_json = out / "study.json"
    write_study(study_json, probe_jsons, p)

    backbones = all_backbones[p.seeds[0]]
    best = best_backbone(probe_jsons[p.seeds[0]])
    log(f"best backbone by probe rank: {best}")
    (out / "best_backbone.txt").write_text(best + "\n")
    best_ckpt = backbones[best]
    heldout = sorted((data / "images").glob("*.jpg"))[-4:]
    pictures = out / "pictures"
    mae_runs = [str(out / "pretrain" / f"{o.replace('+', '_')}_seed{p.seeds[0]}") for o in OBJECTIVES if "mae" in o]
    run(py("-m", "humans.pretrain", "pictures", *[a for r in mae_runs for a in ("--run", r)],
           *[a for label, ck in backbones.items() for a in ("--backbone", f"{label}={ck}")],
           "--size", str(p.global_size), "--out", str(pictures), *map(str, heldout)),
        pictures / "feature_pca.png", "6b. MAE reconstructions and feature PCA on held-out images", light=True)
    sample_images = heldout[:2]
    # longest first (Preset.head_order): the first two lanes start seg and pose (with --head-baselines, seg on
    # both backbones), and seg's whole-image feature cache is written before the other dense heads start (two
    # steps computing one cache entry would only repeat work: each writes its own file)
    head_runs = [(best, best_ckpt, out / "heads")]
    if p.head_baselines and best != "random":
        head_runs.append(("random", backbones["random"], out / "heads_random"))
    run_lanes([Step(py("-m", "humans.heads", "train", "--task", task, "--backbone", str(ckpt), "--data",
                       str(head_data), *head_val, "--out", str(heads_dir / task), "--epochs", str(p.epochs_of(task)),
                       "--size", p.head_size, "--threads", str(lane_threads(p)), "--device", p.device,
                       "--cache-dir", str(out / "feature_cache"),
                       *(["--max-images", str(p.images_of(task))] if p.images_of(task) < p.head_synth_count else [])),
                    heads_dir / task / "head.safetensors",
                    f"6c. train the {task} head on '{label}' (features only, no image skip"
                    + (")" if label == best else ", the baseline)"), f"head_{task}" + ("" if label == best else "_random"))
               for task in p.head_order() for label, ckpt, heads_dir in head_runs], out / "logs")
    for task in TASKS:
        head_dir = out / "heads" / task
        run(py("-m", "humans.heads", "predict", "--task", task, "--checkpoint", str(head_dir / "head.safetensors"),
               "--out", str(out / "predictions" / task), "--truth", str(data), *map(str, sample_images)),
            out / "predictions" / task, f"6d. {task} predictions and overlays", light=True)
    return {"pool": pool, "shards": shards, "report": report, "probe_json": probe_jsons[p.seeds[0]], "data": data,
            "study_json": study_json, "pictures": pictures}


# The embedder's views are those of copy detection, not of semantics: no mirroring (a mirrored photo is
# another image), mild crops only (a re-framed copy is the same image, a different person in the same
# scene is not).
EMBEDDER_VIEWS = ["--set", "views.hflip_p=0", "--set", "views.global_scale=[0.6,1.0]",
                  "--set", "views.local_scale=[0.25,0.6]"]


def pretrain_embedder(out: Path, p: Preset, unlabelled: Path) -> Path:
    """The curation embedder: a brief self-distillation (cl) run on the unlabelled synthetic humans,
    exported; the embedding dedup stage retrieves near duplicates with it (no random weights)."""
    run_dir, ckpt = out / "pretrain" / "embedder", out / "backbones" / "embedder.safetensors"
    run(py("-m", "humans.pretrain", "train", "--model", p.model, "--shards", str(unlabelled), "--objective", "cl",
           "--steps", str(p.embedder_steps), "--batch-size", str(p.pretrain_batch), "--global-size",
           str(p.global_size), "--local-size", str(p.local_size), "--n-local", str(p.n_local), "--prototypes",
           str(p.prototypes), "--seed", "0", "--threads", str(p.threads), "--device", p.device, "--out", str(run_dir),
           "--resume", *p.extra_pretrain, *EMBEDDER_VIEWS),
        run_dir / "ckpt" / f"step_{p.embedder_steps:08d}.pt", f"1c. pretrain the curation embedder ({p.model}, cl)")
    run(py("-m", "humans.pretrain", "export", str(run_dir), "--out", str(ckpt)), ckpt, "1d. export the embedder",
        light=True)
    return ckpt


def _planned(run_dir: Path) -> dict | None:
    """The config an earlier pretraining run in ``run_dir`` was started with (its config.yaml), or None."""
    cfg = run_dir / "config.yaml"
    if not cfg.exists():
        return None
    import yaml

    return yaml.safe_load(cfg.read_text()) or {}


def _planned_steps(run_dir: Path) -> int | None:
    """The step count an earlier pretraining run in ``run_dir`` was started with (its config.yaml)."""
    planned = _planned(run_dir)
    return int(planned.get("steps", 0)) or None if planned is not None else None


def pretrain_arms(out: Path, p: Preset, shards: Path, unlabelled: Path, seed: int) -> dict[str, Path]:
    """A random-init backbone and one pretrained backbone per objective, all of seed ``seed``."""
    backbones: dict[str, Path] = {}
    random_ckpt = out / "backbones" / f"random_seed{seed}.safetensors"
    if not random_ckpt.exists():
        import torch
        from humans.shared.backbone import build_backbone, save_backbone

        random_ckpt.parent.mkdir(parents=True, exist_ok=True)
        torch.manual_seed(seed)
        save_backbone(build_backbone(p.model), random_ckpt)
        log(f"done  4c. random-init {p.model}, seed {seed} (the floor every arm must beat): {random_ckpt}")
    backbones["random"] = random_ckpt
    jobs: list[Step] = []
    # the two arms with a CL term take 2-2.5x the MAE arm's time: they start first
    for objective in sorted(OBJECTIVES, key=lambda o: o == "mae"):
        name = f"{objective.replace('+', '_')}_seed{seed}"
        run_dir = out / "pretrain" / name
        planned = _planned_steps(run_dir)
        if planned is not None and planned != p.pretrain_steps:
            raise SystemExit(f"{run_dir} holds a run of {planned} steps, not {p.pretrain_steps}: use another "
                             f"--out (resuming it would mix the two lengths' checkpoints and backbones)")
        lam = ["--lam", str(p.mae_cl_lam)] if objective == "mae+cl" else []
        old_lam = (_planned(run_dir) or {}).get("lam")
        if lam and old_lam is not None and float(old_lam) != p.mae_cl_lam:
            raise SystemExit(f"{run_dir} holds a mae+cl run with lam {old_lam}, not {p.mae_cl_lam}: use another "
                             f"--out (resuming it would continue the old weighting)")
        jobs.append(Step(py("-m", "humans.pretrain", "train", "--model", p.model, "--shards", f"{shards},{unlabelled}",
                            "--objective", objective, "--steps", str(p.pretrain_steps), "--batch-size",
                            str(p.pretrain_batch), "--global-size", str(p.global_size), "--local-size",
                            str(p.local_size), "--n-local", str(p.n_local), "--prototypes", str(p.prototypes),
                            "--seed", str(seed), "--threads", str(lane_threads(p)), "--device", p.device,
                            "--out", str(run_dir), "--resume", *p.extra_pretrain, *lam),
                         run_dir / "ckpt" / f"step_{p.pretrain_steps:08d}.pt",
                         f"4. pretrain {p.model} ({objective}, seed {seed})", f"pretrain_{name}"))
    run_lanes(jobs, out / "logs")
    for objective in OBJECTIVES:
        name = f"{objective.replace('+', '_')}_seed{seed}"
        ckpt = out / "backbones" / f"{name}.safetensors"
        run(py("-m", "humans.pretrain", "export", str(out / "pretrain" / name), "--out", str(ckpt)), ckpt,
            f"4b. export {name}", light=True)
        backbones[objective] = ckpt
    return backbones


def probe_backbones(out: Path, p: Preset, backbones: dict[str, Path], data: Path, probe_json: Path, probe_md: Path,
                    seed: int) -> None:
    """Step 6a: linear probes of every backbone on all five tasks, into ``probe_json`` and ``probe_md``. With
    several lanes the backbones are split among them (each part in ``OUT/logs/probe_seedS_partK.json``, the
    mean baseline in the first) and the parts merged (``heads.probe.merge_probe_runs``)."""
    if probe_json.exists():
        log(f"skip  6a. linear probes (seed {seed}): {probe_json} exists")
        return
    lanes = 1 if IN_PROCESS else max(1, min(LANES, len(backbones)))
    items = list(backbones.items())
    groups = [items[k::lanes] for k in range(lanes)]
    parts = [probe_json if lanes == 1 else out / "logs" / f"probe_seed{seed}_part{k}.json" for k in range(lanes)]
    desc = f"6a. linear probes of every backbone on all five tasks (seed {seed})"
    run_lanes([Step(py("-m", "humans.heads", "probe",
                       *[a for label, ck in group for a in ("--backbone", f"{label}={ck}")],
                       "--data", str(data), "--size", p.probe_size, "--pose-size", p.pose_crop_size,
                       "--seed", "0", "--threads", str(p.threads if lanes == 1 else lane_threads(p)),
                       "--device", p.device, "--json", str(part), "--cache-dir", str(out / "feature_cache"),
                       *(["--write-results", str(probe_md)] if lanes == 1 else []),
                       *([] if k == 0 else ["--no-baseline"])),
                    part, desc if lanes == 1 else f"{desc}: {', '.join(label for label, _ in group)}",
                    f"probe_seed{seed}_part{k}")
               for k, (group, part) in enumerate(zip(groups, parts))], out / "logs")
    if lanes > 1:
        from humans.heads.probe import merge_probe_runs, write_markdown
        from humans.shared.atomic import atomic_write_json

        merged = merge_probe_runs([json.loads(part.read_text()) for part in parts], list(TASKS),
                                  order=[label for label, _ in items])  # the arms' order, not the lanes'
        write_markdown(str(probe_md), merged, [(label, str(ck)) for label, ck in items], str(data))
        atomic_write_json(probe_json, {k: v for k, v in merged.items() if k != "table"}, sort_keys=False)
        log(f"done  {desc}: {lanes} parts merged into {probe_json}")


def write_study(path: Path, probe_jsons: dict[int, Path], p: Preset) -> None:
    """study.json: the records of every arm, seed, task and metric, plus the table and sentences."""
    from humans.tools import study

    recs = study.records(probe_jsons)
    doc = {"preset": {k: (list(v) if isinstance(v, tuple) else v) for k, v in p.__dict__.items()},
           "records": recs, "table": study.table(recs), "sentences": study.sentences(recs),
           "claims": study.claims(recs)}
    path.write_text(json.dumps(doc, indent=1))
    log("study table (primary metrics, mean ± std over seeds):\n" + doc["table"])
    for line in doc["sentences"]:
        log(line)


def head_images(out: Path, p: Preset, data: Path) -> tuple[Path, list[str]]:
    """Step 5c: the heads' own labelled synthetic humans (``p.head_synth_count`` of generator seed 2000,
    scored on the probes' set ``data``); a folder with fewer is extended, one with more refused. Returns
    the heads' ``--data`` folder and their ``--val-data`` arguments (``data`` and none without 5c)."""
    if not p.head_synth_count:
        return data, []
    head_data, head_val = out / "synth_heads", ["--val-data", str(data)]
    meta = head_data / "meta.json"
    have = json.loads(meta.read_text()).get("count") if meta.exists() else None
    if have is not None and have != p.head_synth_count:
        if have > p.head_synth_count:
            raise SystemExit(f"[main-job] {head_data} holds {have} labelled humans, --head-images asks for "
                             f"{p.head_synth_count}: delete that folder (and OUT/heads, OUT/predictions) or use "
                             f"another --out")
        log(f"5c: {head_data} holds {have} labelled humans, {p.head_synth_count} asked: extending it "
            f"(the first {have} are kept)")
        meta.unlink()  # the generator resumes: complete items are kept, item i depends only on (seed, i)
    run(py("-m", "humans.shared.synth", "--out", str(head_data), "--count", str(p.head_synth_count), "--size",
           str(p.synth_size), "--seed", "2000", "--threads", str(p.threads)), head_data / "meta.json",
        "5c. more labelled synthetic humans for the heads (another seed; scored on the probes' set)")
    return head_data, head_val


def best_backbone(probe_json: Path) -> str:
    """The pretrained backbone with the best mean rank over the five tasks' primary probe metrics (those of
    study.json, ``heads.probe.PRIMARY``: pose PCK@0.1, not OKS AP, which reads 0 for every backbone at the
    probes' scale and so ranked pose by label name); ties go to the first label in sort order."""
    from humans.heads.probe import PRIMARY

    results = json.loads(probe_json.read_text())["results"]
    labels = [k for k in results if k != "random" and "baseline" not in k]
    ranks = {k: 0 for k in labels}
    for task, (metric, higher_is_better) in PRIMARY.items():
        scored = sorted((-results[k][task][metric] if higher_is_better else results[k][task][metric], k)
                        for k in labels if metric in results[k].get(task, {}))
        for rank, (_, label) in enumerate(scored):
            ranks[label] += rank
    return min(labels, key=lambda k: (ranks[k], k))


def main(argv: list[str] | None = None) -> int:
    from humans.shared.cli import HelpFormatter, add_out, examples

    ap = argparse.ArgumentParser(prog="humans", description=__doc__.split("\n\n    ")[0],
                                 formatter_class=HelpFormatter,
                                 epilog=examples("humans --out runs/main", "humans --out /tmp/x --preset tiny",
                                                 "python tools/main_job.py --out runs/main --fresh"))
    add_out(ap, "output folder of the whole job (default runs/main)", required=False, default="runs/main")
    ap.add_argument("--preset", choices=sorted(PRESETS), default="demo",
                    help="sizes of every step: demo (README default: one seed, about 17 min on 2 cores), study "
                         "(three seeds per arm, 600 pretraining steps, the error bars: 74 min on 2 cores one step "
                         "at a time, less with lanes; give it its own --out), "
                         "study-gpu (the study at GPU scale), tiny (test)")
    ap.add_argument("--head-epochs", default=None, metavar="N | TASK=N,...",
                    help="epochs of the heads: N for all five, TASK=N for one (e.g. 20 or seg=48,albedo=24 or "
                         "20,seg=48; default: the preset's, demo 3 on its 2400 images, seg 9 and pose 12 on its 600). More "
                         "epochs sharpen seg and albedo but overfit normals and pointmap; more data helps all "
                         "(benchmarks/results/main_job.md). "
                         "Finished heads are kept: delete OUT/heads and OUT/predictions to retrain them")
    ap.add_argument("--head-baselines", action="store_true",
                    help="also train the five heads on the random-init backbone (OUT/heads_random) and show them "
                         "beside the best backbone's on the summary page (about 7 more minutes for the demo on 2 "
                         "cores; the study preset's heads too)")
    ap.add_argument("--head-images", type=int, default=None, metavar="N",
                    help="labelled synthetic humans every head trains on (default: the preset's; demo 2400, its "
                         "pose head the first 600 of them). Each head's epochs scale so that it sees as many "
                         "samples as the preset gives it, so the heads take about the same time: 600 gives the demo's "
                         "seg head 36 epochs and the others 12 (the demo before 2400), 9600 gives seg 2 and the "
                         "others 1. --head-epochs sets epochs over that: at 12 epochs each, seg mIoU 0.099 / 0.164 "
                         "/ 0.225 and normals 32.6 / 30.4 / 28.6 deg at 600 / 2400 / 9600, pose PCK@0.1 0.505 / "
                         "0.595 at 600 / 9600, about 0.6 s per image for the five heads on 2 cores (9600: about "
                         "100 min). A smaller folder is extended. Finished heads are kept: delete OUT/heads and "
                         "OUT/predictions to retrain them")
    ap.add_argument("--pretrain-steps", type=int, default=None, metavar="N",
                    help="pretraining steps of every arm (default: the preset's; demo 200, study 600). Runs of "
                         "other lengths are kept apart: their checkpoints are named by step, so use another --out")
    ap.add_argument("--record", action="store_true",
                    help="also copy study.json to benchmarks/results/study.json (the figures RESULTS.md cites)")
    ap.add_argument("--fresh", action="store_true", help="delete --out first and redo every step")
    ap.add_argument("--in-process", action="store_true",
                    help="call each command's main() in this process (faster start; the test uses it) "
                         "instead of one subprocess per step")
    ap.add_argument("--lanes", type=int, default=None, metavar="N",
                    help="independent heavy steps run N at a time (the pretraining arms, the probes' backbones, the "
                         "five heads), each on threads/N threads, its output in OUT/logs/ (default: 2 on a CPU with "
                         "2 or more threads, 1 on a GPU; 1: one after another, as before). Small models gain little "
                         "from a second thread, so two steps side by side save about a quarter of their time")
    args = ap.parse_args(argv)
    preset = PRESETS[args.preset]
    if args.head_images is not None:  # first: --head-epochs, when given, sets the epochs over its scaled ones
        if args.head_images < 1:
            ap.error(f"--head-images {args.head_images}: allowed >= 1")
        preset = with_head_images(preset, args.head_images)
    if args.head_epochs is not None:
        try:
            preset = with_head_epochs(preset, args.head_epochs)
        except ValueError as e:
            ap.error(str(e))
    if args.head_baselines:
        preset = dataclasses.replace(preset, head_baselines=True)
    if args.pretrain_steps is not None:
        if args.pretrain_steps < 1:
            ap.error(f"--pretrain-steps {args.pretrain_steps}: allowed >= 1")
        preset = dataclasses.replace(preset, pretrain_steps=args.pretrain_steps)
    if args.lanes is not None and args.lanes < 1:
        ap.error(f"--lanes {args.lanes}: allowed >= 1")
    global IN_PROCESS, LANES
    IN_PROCESS = args.in_process
    LANES = args.lanes if args.lanes is not None else (2 if preset.device == "cpu" and preset.threads >= 2 else 1)
    out = Path(args.out).resolve()
    if args.fresh and out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    paths = steps(out, preset)
    from humans.tools.summary_page import write_summary

    summary = write_summary(out, paths, TASKS)
    if args.record:
        dest = ROOT / "benchmarks" / "results" / "study.json"
        doc = json.loads(paths["study_json"].read_text())
        doc["wall_s"] = round(time.time() - t0)
        doc["machine"] = f"{os.cpu_count()} CPU cores" + (", GPU" if preset.device == "cuda" else ", no GPU")
        dest.write_text(json.dumps(doc, indent=1))
        log(f"recorded {dest}")
    log(f"all steps done in {time.time() - t0:.0f} s; summary page: {summary}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
