"""The scoring description written into results.json (fastreid_ext.evaluation.scoring)."""
import pytest

import fastreid_ext  # noqa: F401
from fastreid_ext.config import build_config
from fastreid_ext.data.video_dataset import VideoTestDataset
from fastreid_ext.evaluation.scoring import describe_scoring, scoring_line


def _items(lengths):
    return [(tuple(f"/x/{k}/{f:04d}.jpg" for f in range(n)), k, 0) for k, n in enumerate(lengths)]


def _cfg(*opts):
    return build_config(None, list(opts))


def test_every_frame_is_the_default():
    cfg = _cfg()
    assert cfg.TEST.VIDEO.MAX_CLIPS == 0 and cfg.INPUT.VIDEO.SHORT_PAD == cfg.TEST.VIDEO.SHORT_PAD == "cycle"
    lengths = [3, 8, 9, 300]
    ds = VideoTestDataset(_items(lengths), None, 4, cfg.TEST.VIDEO.MAX_CLIPS)
    d = describe_scoring(cfg, "mars_official", ds)
    assert d["sampling"] == "dense, every frame" and d["tracklets_not_seen_whole"] == 0
    assert d["frames_seen"] == {"min": 3, "mean": sum(lengths) / 4, "max": 300}
    assert d["ap"] == "trapezoid" and d["ties"] == "gallery order"
    assert "T=4" in scoring_line(d) and "0 of 4 tracklets not seen whole" in scoring_line(d)


@pytest.mark.parametrize("n", [9, 13, 300])
def test_clip_cap_counts_the_frames_left_out(n):
    """With at most 2 clips of T = 4, a tracklet of n > 8 frames keeps its first clip and its
    last (padded) clip: 4 + (n - 4 * (ceil(n / 4) - 1)) distinct frames."""
    cfg = _cfg("TEST.VIDEO.MAX_CLIPS", "2", "TEST.VIDEO.SHORT_PAD", "repeat_last")
    ds = VideoTestDataset(_items([n, 5]), None, 4, 2, cfg.TEST.VIDEO.SHORT_PAD)
    last_real = n - 4 * (-(-n // 4) - 1)
    d = describe_scoring(cfg, "cross_camera", ds)
    assert d["frames_seen"]["max"] == 4 + last_real and d["frames_seen"]["min"] == 5
    assert d["tracklets_not_seen_whole"] == 1 and d["short_pad"] == "repeat_last"
    assert d["sampling"] == "dense, at most 2 clips spread over the tracklet" and d["ap"] == "noninterp"


def test_first_clips_are_described():
    ds = VideoTestDataset(_items([40, 5]), None, 4, 3, select="first")
    d = describe_scoring(_cfg(), "cross_camera", ds)
    assert d["sampling"] == "dense, the first 3 clips" and d["frames_seen"]["max"] == 12


def test_images_and_fgpr():
    cfg = _cfg()
    d = describe_scoring(cfg, "fgpr", None)
    assert d["sampling"] == "one image per item" and d["ap"] == "noninterp"


def test_max_clips_zero_accepted_and_bad_values_refused():
    from fastreid_ext.config import validate_config

    validate_config(_cfg("TEST.VIDEO.MAX_CLIPS", "0"))
    with pytest.raises(ValueError, match="MAX_CLIPS"):
        validate_config(_cfg("TEST.VIDEO.MAX_CLIPS", "-1"))
    with pytest.raises(ValueError, match="SHORT_PAD"):
        validate_config(_cfg("INPUT.VIDEO.SHORT_PAD", "mirror"))
    with pytest.raises(ValueError, match="TEST.VIDEO.SHORT_PAD"):
        validate_config(_cfg("TEST.VIDEO.SHORT_PAD", "mirror"))
