"""Scoring in saved parts: shared across processes, interrupted, resumed, refused when the settings changed."""

import csv
import logging

import pytest
import torch

from pyro_vae.errors import UsageError
from pyro_vae.runs import parts as parts_module
from pyro_vae.runs.parts import PART_SECONDS, Scored, projected_time, read_part, score_in_parts, timed_part_size
from pyro_vae.runs.per_image import choose_images, paired_differences, read_csv, write_csv
from pyro_vae.training.distributed import Context


class Scorer:
    """Per-image values from the image's index alone (as streams make them); records what it scored, and can
    be made to stop (Ctrl-C) before scoring its ``stop_at``-th part."""

    def __init__(self, stop_at=None):
        self.scored, self.stop_at = [], stop_at

    def __call__(self, rows):
        if len(self.scored) == self.stop_at:
            raise KeyboardInterrupt
        self.scored.append(rows.tolist())
        return Scored({"value": rows.double() ** 0.5, "twice": 2.0 * rows.double()}, {"ais": 1.0})


def test_parts_are_shared_across_processes_and_gathered_in_order(tmp_path):
    index = torch.tensor([2, 3, 5, 8, 13, 21, 34])
    whole = score_in_parts(Scorer(), index, 3, tmp_path / "one", {"k": 1}, progress=False)
    assert torch.equal(whole.values["twice"], 2.0 * index.double()) and whole.seconds["ais"] == 3.0
    # processes r of 2 score parts r, r + 2, ...: the parts 0 and 2, and part 1 (Context.gather is the identity
    # here, so each "process" runs alone and has only its own parts; process 0 makes the folder, so process 1's
    # is made here)
    scorers = [Scorer(), Scorer()]
    for rank in (0, 1):
        (tmp_path / f"r{rank}").mkdir()
        with pytest.raises(KeyError):  # alone, the other process's parts are missing at the gather
            score_in_parts(scorers[rank], index, 3, tmp_path / f"r{rank}", {"k": 1}, context=FakeContext(rank, 2),
                           progress=False)
    assert scorers[0].scored == [[2, 3, 5], [34]] and scorers[1].scored == [[8, 13, 21]]


class FakeContext(Context):
    def gather(self, obj):
        return [obj]


def test_an_interrupted_evaluation_resumes_where_it_stopped(tmp_path):
    index = torch.arange(10, 20)
    folder, settings = tmp_path / "parts", {"steps": 100, "checkpoint_sha256": "ab" * 32}
    with pytest.raises(KeyboardInterrupt, match=r"2 of this process's 4 parts of 3 images are saved in .*resume"):
        score_in_parts(Scorer(stop_at=2), index, 3, folder, settings, progress=False)
    assert sorted(p.name for p in folder.iterdir()) == ["part-000000.pt", "part-000001.pt", "settings.json"]

    with pytest.raises(UsageError, match=r"cannot resume .*steps was 100, now 1000; pass the earlier settings"):
        score_in_parts(Scorer(), index, 3, folder, {**settings, "steps": 1000}, resume=True, progress=False)
    resumed = Scorer()  # asked for parts of 5 (a part size set by time differs from run to run): the saved 3 kept
    result = score_in_parts(resumed, index, 5, folder, settings, resume=True, progress=False)
    assert resumed.scored == [[16, 17, 18], [19]]  # only the parts the first run did not finish
    assert torch.equal(result.values["value"], index.double() ** 0.5)

    # a damaged part is scored again, not trusted; one of other images is scored again too
    (folder / "part-000000.pt").write_bytes(b"garbage")
    (folder / "part-000002.pt").write_bytes((folder / "part-000001.pt").read_bytes())  # images 13-15 as 16-18's
    again = Scorer()
    result = score_in_parts(again, index, 3, folder, settings, resume=True, progress=False)
    assert again.scored == [[10, 11, 12], [16, 17, 18]]
    assert torch.equal(result.values["value"], index.double() ** 0.5)
    fingerprint = {**settings, "part_size": 3}
    assert read_part(folder / "part-000001.pt", fingerprint, torch.arange(13, 16)) is not None
    assert read_part(folder / "part-000001.pt", fingerprint, torch.arange(16, 19)) is None  # another part's images
    # an edited part (a value +5 nats, a NaN written in, a column dropped) fails its checksum: scored again
    for edit in (lambda v: v["value"].add_(5.0), lambda v: v["value"].fill_(float("nan")), lambda v: v.pop("twice")):
        saved = torch.load(folder / "part-000001.pt", weights_only=True)
        edit(saved["values"])
        torch.save(saved, folder / "part-000001.pt")
        assert read_part(folder / "part-000001.pt", fingerprint, torch.arange(13, 16)) is None
        again = Scorer()
        result = score_in_parts(again, index, 3, folder, settings, resume=True, progress=False)
        assert again.scored == [[13, 14, 15]] and torch.equal(result.values["value"], index.double() ** 0.5)
    # without `resume`, saved parts (perhaps hours of work) are not removed unasked
    with pytest.raises(UsageError, match=r"holds 4 saved parts of an interrupted evaluation: add `resume`"):
        score_in_parts(Scorer(), index, 3, folder, settings, progress=False)
    assert len(list(folder.glob("part-*.pt"))) == 4
    with pytest.raises(UsageError, match="nothing to resume"):
        score_in_parts(Scorer(), index, 3, tmp_path / "none", settings, resume=True, progress=False)


@pytest.mark.parametrize("seconds, expected", [(None, 100), (0.01, 100), (2.0, 30), (600.0, 1)])
def test_a_part_holds_about_a_minute_of_work(seconds, expected):
    # at 2 s an image, 30 images a part: stopping after a minute or two keeps work (not one part of 11 minutes)
    assert PART_SECONDS == 60.0 and timed_part_size(100, seconds) == expected


def test_settings_that_name_no_part_size_are_not_resumed(tmp_path):
    (tmp_path / "parts").mkdir()
    (tmp_path / "parts" / "settings.json").write_text('{"steps": 100}')  # an older version's folder
    with pytest.raises(UsageError, match=r"names no part size .* drop `resume` to start over"):
        score_in_parts(Scorer(), torch.arange(4), 2, tmp_path / "parts", {"steps": 100}, resume=True, progress=False)


def test_random_images_are_the_same_for_a_seed_and_recorded():
    index, chosen = choose_images(100, images=10, seed=3)
    assert torch.equal(index, choose_images(100, images=10, seed=3)[0])
    assert chosen == {"selection": "random", "seed": 3, "count": 10, "index": index.tolist()}
    assert len(set(index.tolist())) == 10 and index.tolist() == sorted(index.tolist()) and index.max() < 100
    assert not torch.equal(index, choose_images(100, images=10, seed=4)[0])
    assert choose_images(100, images=10, seed=3)[0].tolist() != list(range(10))
    assert choose_images(100, limit=4)[0].tolist() == [0, 1, 2, 3]
    assert choose_images(5)[1] == {"selection": "all", "count": 5}
    with pytest.raises(UsageError, match="pass one of them"):
        choose_images(100, images=3, limit=3)
    with pytest.raises(UsageError, match=r"`images=101` is more than the 100 test images; pass at most 100"):
        choose_images(100, images=101)


def test_per_image_values_read_back_exactly(tmp_path):
    values = {"elbo": torch.tensor([-1 / 3, -100.123456789]), "khat": torch.tensor([float("inf"), 0.5])}
    write_csv(tmp_path / "per_image.csv", torch.tensor([7, 9]), values)
    rows = list(csv.DictReader(open(tmp_path / "per_image.csv")))
    assert [r["index"] for r in rows] == ["7", "9"]
    assert [float(r["elbo"]) for r in rows] == values["elbo"].double().tolist()
    assert float(rows[0]["khat"]) == float("inf")


def test_paired_differences_by_hand(tmp_path):
    """Two evaluations of images {1, 2, 3, 4} and {2, 3, 4, 5}: paired on the shared three, by image index.
    ELBO differences (this - that) 1, 0, 2: mean 1, SD 1, paired SE 1 / sqrt 3; the unpaired SE from the
    two columns' variances on the shared images (-2, -3, -2 and -3, -3, -4: 1/3 each) is sqrt(2/3 / 3)."""
    write_csv(tmp_path / "that.csv", torch.tensor([2, 3, 4, 5]), {"elbo": torch.tensor([-3.0, -3.0, -4.0, -9.0]),
                                                                  "khat": torch.ones(4)})
    index, values = read_csv(tmp_path / "that.csv")
    assert index.tolist() == [2, 3, 4, 5] and values["elbo"].tolist() == [-3.0, -3.0, -4.0, -9.0]
    shared, diffs = paired_differences(torch.tensor([4, 3, 2, 1]), {"elbo": torch.tensor([-2.0, -3.0, -2.0, 0.0]),
                                                                    "khat": torch.ones(4)}, index, values)
    assert shared == 3 and set(diffs) == {"elbo"}  # k^ is a diagnostic, not a quantity to difference
    assert diffs["elbo"]["mean"] == pytest.approx(1.0)
    assert diffs["elbo"]["se"] == pytest.approx(1 / 3**0.5)
    assert diffs["elbo"]["unpaired_se"] == pytest.approx((2 / 3 / 3) ** 0.5)
    with pytest.raises(UsageError, match="share 1 images"):
        paired_differences(torch.tensor([5, 9]), {"elbo": torch.zeros(2)}, index, values)
    (tmp_path / "bad.csv").write_text("not,a\ntable")
    with pytest.raises(UsageError, match="is not a per-image results file"):
        read_csv(tmp_path / "bad.csv")
    with pytest.raises(UsageError, match=r"share no column to compare \(this one has ais_5; the other elbo, khat\)"):
        paired_differences(torch.tensor([2, 3]), {"ais_5": torch.zeros(2)}, index, values)


@pytest.mark.parametrize("table, fault", [
    ("index,elbo\n1,-3.0\n2,nan\n", "its column elbo holds NaN or infinite values"),
    ("index,elbo\n1,-3.0\n2,-inf\n", "its column elbo holds NaN or infinite values"),
    ("index,elbo\n1,-3.0\n1,-4.0\n", "its index column names an image twice"),
    ("index,elbo\n1,-3.0\n66.5,-4.0\n", "its index column holds a value that is no image number"),
    ("index,elbo\n-1,-3.0\n2,-4.0\n", "its index column holds a value that is no image number"),
])
def test_an_edited_results_file_is_refused_in_one_line(tmp_path, table, fault):
    (tmp_path / "edited.csv").write_text(table)
    with pytest.raises(UsageError, match=f"edited.csv is not a per-image results file .*: {fault}"):
        read_csv(tmp_path / "edited.csv")
    (tmp_path / "khat.csv").write_text("index,elbo,khat\n1,-3.0,inf\n2,-4.0,0.5\n")  # k^ may be inf (too few samples)
    assert read_csv(tmp_path / "khat.csv")[1]["khat"][0] == float("inf")


def test_a_fifo_is_refused_or_scored_again_not_read_forever(tmp_path, caplog):
    import os

    from pyro_vae.commands.config_file import read as read_config
    from pyro_vae.training.checkpoint import read as read_checkpoint

    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    for read, what in ((read_csv, "the per-image results file"), (read_config, "the config file"),
                       (read_checkpoint, "checkpoint")):
        with pytest.raises(UsageError, match=f"{what} {fifo} is a FIFO, not a file: pass a regular file"):
            read(fifo)
    index, folder = torch.arange(4), tmp_path / "parts"
    score_in_parts(Scorer(stop_at=None), index, 2, folder, {}, progress=False)  # folder removed at the end? kept here
    (folder / "part-000001.pt").unlink()
    os.mkfifo(folder / "part-000001.pt")
    again = Scorer()
    with caplog.at_level(logging.WARNING, logger="pyro_vae"):
        score_in_parts(again, index, 2, folder, {}, resume=True, progress=False)
    assert again.scored == [[2, 3]] and "part-000001.pt is a FIFO, not a saved part: scoring its images again" in \
        caplog.text


def test_a_long_evaluation_says_how_long_after_its_first_part(tmp_path, monkeypatch, caplog):
    """A K or a step count that fits in memory may still take hours: the first part's time says so (here each
    part "takes" 200 s, by the clock the module reads)."""
    clock = iter(range(0, 10_000, 200))
    monkeypatch.setattr(parts_module.time, "perf_counter", lambda: float(next(clock)))
    with caplog.at_level(logging.INFO, logger="pyro_vae"):
        score_in_parts(Scorer(), torch.arange(20), 2, tmp_path / "parts", {}, progress=False)
    assert "the first of 10 parts took 200 s: the whole evaluation will take about 33 min" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="pyro_vae"):
        score_in_parts(Scorer(), torch.arange(4), 2, tmp_path / "short", {}, progress=False)
    assert "will take" not in caplog.text  # 2 parts of 200 s: not long


def test_a_long_evaluation_says_how_long_before_it_starts(caplog):
    """A K or a step count that fits in memory may run for hours without a word (bdmc --iwae-samples ran past
    300 s): 1e11 samples at 1,000/s in 2 processes is 5e7 s; ten minutes' worth or less says nothing."""
    with caplog.at_level(logging.INFO, logger="pyro_vae"):
        projected_time(1e11, 1000.0, 2)
        assert "this evaluation will take about 13888 h 53 min (1e+11 samples of z at 1000/s per process" in caplog.text
        caplog.clear()
        projected_time(1e6, 1000.0, 2)  # 500 s
        assert caplog.text == ""
