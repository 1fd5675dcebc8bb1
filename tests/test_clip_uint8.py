"""The train clip transform works on uint8: its output, converted to float, equals the float32
pipeline it replaces (ported below as the reference: padded copy, crop, flip, float stack, float
erasing fill) exactly outside the erased rectangles and up to the fill's rounding inside them
(``|uint8 fill - float fill| <= 0.5``, e.g. the host's 123.675 -> 124); the model's one
conversion + normalisation gives the same input from either dtype."""
import cv2
import numpy as np
import pytest
import torch

from fastreid_ext.data.transforms import _PAD_MODES, ClipTrainTransform, erase_fill
from fastreid_ext.modeling.video_utils import preprocess_clip

HOST_FILL = (0.485 * 255, 0.456 * 255, 0.406 * 255)  # the host's INPUT.REA.VALUE


def float_pipeline(frames, params, pad_mode, fill):
    """The float32 train transform as it was: resize (sizes equal here), copyMakeBorder + crop,
    flip, float stack, erasing with the float fill."""
    H, W = params.out_size
    p, (oy, ox) = params.pad, params.crop
    out = []
    for f in frames:
        if p:
            f = cv2.copyMakeBorder(f, p, p, p, p, _PAD_MODES[pad_mode], value=(0, 0, 0))[oy:oy + H, ox:ox + W]
        if params.flip:
            f = f[:, ::-1]
        out.append(f.transpose(2, 0, 1).astype(np.float32))
    clip = np.stack(out)
    v = np.asarray(fill, np.float32).reshape(-1, 1, 1)
    rects = [(slice(None), params.erase)] + [(t, r) for t, r in enumerate(params.frame_erase)]
    mask = np.zeros(clip.shape, bool)
    for t, r in rects:
        if r is not None:
            y, x, h, w = r
            clip[t, :, y:y + h, x:x + w] = v
            mask[t, :, y:y + h, x:x + w] = True
    return clip, mask


@pytest.mark.parametrize("pad_mode", sorted(_PAD_MODES))
@pytest.mark.parametrize("fill", [HOST_FILL, (10.0, 200.0, 255.0)])
def test_uint8_clip_equals_the_float_pipeline_up_to_the_fill_rounding(pad_mode, fill):
    H, W = 24, 12
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 256, (H, W, 3), dtype=np.uint8) for _ in range(4)]
    tf = ClipTrainTransform((H, W), padding=5, pad_mode=pad_mode, flip_prob=0.5, rea_prob=0.7,
                            rea_value=fill, frame_erase_prob=0.4)
    draws = np.random.default_rng(1)
    hit = 0
    for _ in range(25):
        clip, params = tf(frames, draws)
        assert clip.dtype == torch.uint8 and clip.shape == (4, 3, H, W)
        ref, mask = float_pipeline(frames, params, pad_mode, fill)
        got = clip.numpy().astype(np.float32)
        np.testing.assert_array_equal(got[~mask], ref[~mask])  # exact outside the erased pixels
        diff = np.abs(got - ref)[mask]
        assert diff.size == 0 or diff.max() <= 0.5 + 1e-4  # rounding of the fill only
        hit += int(mask.any())
        if fill[0] == 10.0:  # an integer fill: identical everywhere
            np.testing.assert_array_equal(got, ref)
    assert hit > 5  # erasing was exercised


def test_erase_fill_rounds_and_refuses_values_outside_the_pixel_range():
    np.testing.assert_array_equal(erase_fill(HOST_FILL).ravel(), [124, 116, 104])  # 123.675, 116.28, 103.53
    with pytest.raises(ValueError, match="0..255"):
        erase_fill((-1.0, 0.0, 0.0))
    with pytest.raises(ValueError, match="0..255"):
        ClipTrainTransform((8, 4), rea_value=(0.0, 0.0, 256.0))


def test_model_input_is_the_same_from_uint8_and_float_clips():
    """The model's one conversion: uint8 -> float32 -> (x - mean) / std equals the float path."""
    x = torch.from_numpy(np.random.default_rng(2).integers(0, 256, (2, 3, 3, 8, 4), dtype=np.uint8))
    mean, std = [123.675, 116.28, 103.53], [58.395, 57.12, 57.375]
    a = preprocess_clip(x, mean, std)
    b = preprocess_clip(x.float(), mean, std)
    assert a.dtype == torch.float32 and torch.equal(a, b)
    ref = (x.double() - torch.tensor(mean, dtype=torch.float64).view(1, 1, 3, 1, 1)) / \
        torch.tensor(std, dtype=torch.float64).view(1, 1, 3, 1, 1)
    torch.testing.assert_close(a.double(), ref, rtol=0, atol=1e-5)
