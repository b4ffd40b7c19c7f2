"""`data.image_io`: every kind of image file comes out as uint8 RGB; bad files raise errors naming them."""

import cv2
import numpy as np
import pytest
from PIL import Image

from data.image_io import IMAGE_EXTENSIONS, ImageReadError, list_images, read_rgb, to_tensor, write_rgb

RNG = np.random.default_rng(0)
RGB = RNG.integers(0, 256, (9, 13, 3), dtype=np.uint8)


@pytest.mark.parametrize('ext', ['.png', '.bmp', '.tif', '.webp'])
def test_lossless_round_trip_keeps_rgb_order(tmp_path, ext):
    path = tmp_path / f'a{ext}'
    write_rgb(path, RGB)
    assert np.array_equal(read_rgb(path), RGB)
    assert ext in IMAGE_EXTENSIONS


def test_jpeg_round_trip_is_close_and_rgb_ordered(tmp_path):
    red = np.zeros((16, 16, 3), np.uint8)
    red[..., 0] = 200
    write_rgb(tmp_path / 'sub' / 'r.jpg', red)  # parent folders are created
    back = read_rgb(tmp_path / 'sub' / 'r.jpg')
    assert back.shape == red.shape and np.abs(back.astype(int) - red).max() <= 3


def test_grey_rgba_palette_and_grey_alpha_become_rgb(tmp_path):
    grey = RGB[..., 0]
    Image.fromarray(grey).save(tmp_path / 'g.png')
    Image.fromarray(np.dstack([RGB, np.full(RGB.shape[:2], 7, np.uint8)])).save(tmp_path / 'rgba.png')
    Image.fromarray(np.dstack([grey, grey])).convert('LA').save(tmp_path / 'la.png')
    palette = Image.fromarray(RGB).convert('P')
    palette.save(tmp_path / 'p.png')
    assert np.array_equal(read_rgb(tmp_path / 'g.png'), np.repeat(grey[..., None], 3, axis=2))
    assert np.array_equal(read_rgb(tmp_path / 'rgba.png'), RGB)  # alpha dropped
    assert np.array_equal(read_rgb(tmp_path / 'la.png'), np.repeat(grey[..., None], 3, axis=2))
    assert np.array_equal(read_rgb(tmp_path / 'p.png'), np.asarray(palette.convert('RGB')))


def test_16_bit_images_are_rounded_to_8_bits(tmp_path):
    values = np.array([[0, 128, 129, 257, 385, 386, 65535]], np.uint16)  # 385/257 = 1.498, 386/257 = 1.502
    cv2.imwrite(str(tmp_path / 'g16.png'), values)
    cv2.imwrite(str(tmp_path / 'c16.png'), np.dstack([values, values, np.zeros_like(values)]))  # BGR on disk
    expected = np.array([0, 0, 1, 1, 1, 2, 255], np.uint8)
    assert np.array_equal(read_rgb(tmp_path / 'g16.png')[0, :, 1], expected)
    colour = read_rgb(tmp_path / 'c16.png')
    assert colour.dtype == np.uint8
    assert np.array_equal(colour[0, :, 2], expected) and not colour[..., 0].any()  # B,G,R -> R,G,B


@pytest.mark.parametrize('ext', ['.png', '.jpg'])
def test_truncated_files_raise_naming_the_file(tmp_path, ext):
    path = tmp_path / f'cut{ext}'
    write_rgb(path, RGB)
    data = path.read_bytes()
    path.write_bytes(data[:len(data) * 2 // 3])
    with pytest.raises(ImageReadError, match=f'cut{ext}.*truncated or corrupt'):
        read_rgb(path)


def test_empty_missing_and_non_image_files_raise_naming_the_file(tmp_path):
    (tmp_path / 'zero.png').write_bytes(b'')
    (tmp_path / 'text.png').write_text('not an image')
    with pytest.raises(ImageReadError, match=r'zero\.png.*empty \(0 bytes\)'):
        read_rgb(tmp_path / 'zero.png')
    with pytest.raises(ImageReadError, match=r'text\.png.*not a decodable image'):
        read_rgb(tmp_path / 'text.png')
    with pytest.raises(ImageReadError, match=r'absent\.png.*cannot read'):
        read_rgb(tmp_path / 'absent.png')
    assert issubclass(ImageReadError, ValueError)


def test_write_rgb_rejects_what_is_not_uint8_rgb(tmp_path):
    for bad in (RGB.astype(np.float32), RGB[..., 0], RGB[..., :2]):
        with pytest.raises(ValueError, match='expected a uint8 HxWx3 array'):
            write_rgb(tmp_path / 'x.png', bad)
    with pytest.raises(ValueError, match='cannot encode'):
        write_rgb(tmp_path / 'x.txt', RGB)


def test_list_images_skips_hidden_and_other_files(tmp_path):
    for name in ('b.PNG', 'a.jpg', 'notes.txt', '.hidden.png', '._a.jpg', 'sub/c.png', '.cache/d.png'):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b'x')
    assert [p.name for p in list_images(tmp_path)] == ['a.jpg', 'b.PNG']
    assert [p.relative_to(tmp_path).as_posix() for p in list_images(tmp_path, recursive=True)] == [
        'a.jpg', 'b.PNG', 'sub/c.png']


def test_to_tensor():
    tensor = to_tensor(RGB)
    assert tensor.shape == (3, 9, 13) and tensor.dtype.is_floating_point
    assert tensor[1, 2, 3].item() == pytest.approx(RGB[2, 3, 1] / 255)
