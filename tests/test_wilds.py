"WildsFolder reads the folder layouts of the `wilds` package (v2.0): splits, labels, groups and metrics, on generated folders."
from pathlib import Path
import numpy as np, torch, pytest
from PIL import Image
from arclf.wilds import WildsFolder, wilds_metrics, WATERBIRDS_TRAIN_COUNTS

def png(path, h=40, w=48, seed=0):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.random.default_rng(seed).integers(0, 255, (h, w, 3), dtype=np.uint8)).save(path)

def test_waterbirds(tmp_path):
    d = tmp_path/'waterbirds_v1.0'
    rows = [('a/1.jpg', 0, 0, 0), ('a/2.jpg', 1, 1, 0), ('b/3.jpg', 0, 2, 1), ('b/4.jpg', 1, 2, 0), ('b/5.jpg', 1, 2, 1)]
    for f, *_ in rows: png(d/f)
    (d/'metadata.csv').write_text('img_id,img_filename,y,split,place\n' + ''.join(f'{i},{f},{y},{s},{p}\n' for i, (f, y, s, p) in enumerate(rows)))
    ds = WildsFolder('waterbirds', tmp_path, 'test', size=16)
    assert ds.y.tolist() == [0, 1, 1] and ds.groups.tolist() == [1, 2, 3]
    s = ds.take(); assert s.x.shape == (3, 3, 16, 16) and s.groups.tolist() == [1, 2, 3]
    m = wilds_metrics(torch.tensor([0, 0, 1]), s.y, s.groups, 'waterbirds', ds.group_names)
    assert m['worst'] == 0 and m['worst_group'] == 'waterbird, land'
    tot = sum(WATERBIRDS_TRAIN_COUNTS.values())
    assert abs(m['adj_avg'] - (WATERBIRDS_TRAIN_COUNTS[1] + WATERBIRDS_TRAIN_COUNTS[3]) / tot) < 1e-6

def test_camelyon17_hospitals_decide_the_ood_splits(tmp_path):
    d = tmp_path/'camelyon17_v1.0'
    rows = [('004', 4, 3328, 21792, 1, 0, 0), ('010', 0, 1, 2, 0, 1, 0), ('020', 1, 5, 6, 1, 2, 0), ('030', 2, 7, 8, 0, 3, 1)]
    lines = [',patient,node,x_coord,y_coord,tumor,center,split']
    for i, (pa, no, x, y, t, c, s) in enumerate(rows):
        lines.append(f'{i},{pa},{no},{x},{y},{t},{c},{s}'); png(d/'patches'/f'patient_{pa}_node_{no}'/f'patch_patient_{pa}_node_{no}_x_{x}_y_{y}.png', 96, 96)
    (d/'metadata.csv').write_text('\n'.join(lines) + '\n')
    split = {s: WildsFolder('camelyon17', tmp_path, s, size=32) for s in ('train', 'val', 'test', 'id_val')}
    assert [len(split[s]) for s in ('train', 'val', 'test', 'id_val')] == [1, 1, 1, 1]
    assert split['test'].y.tolist() == [1] and split['test'].groups.tolist() == [2]   # hospital 2 is the test hospital
    assert 'patient_004_node_4' in str(split['train'].paths[0])                       # patient ids keep their zeros
    assert split['train'].take().x.shape == (1, 3, 32, 32)

def test_fmow_official_split_and_regions(tmp_path):
    d = tmp_path/'fmow_v1.1'
    rows = [('train', '2010-05-01T10:00:00Z', 'USA', 'zoo'), ('seq', '2010-01-01T00:00:00Z', 'USA', 'airport'),
            ('test', '2016-03-01T00:00:00Z', 'FRA', 'airport'), ('test', '2017-03-01T00:00:00Z', 'XXX', 'zoo'),
            ('val', '2014-06-01T00:00:00Z', 'USA', 'airport'), ('train', '2014-06-01T00:00:00Z', 'USA', 'zoo')]
    (d).mkdir(parents=True)
    (d/'rgb_metadata.csv').write_text('split,img_filename,timestamp,country_code,category\n' +
                                      ''.join(f'{s},x.jpg,{t},{c},{k}\n' for s, t, c, k in rows))
    (d/'country_code_mapping.csv').write_text('alpha-3,region\nUSA,Americas\nFRA,Europe\n')
    for i in range(len(rows)): png(d/'images'/f'rgb_img_{i}.png', 32, 32, seed=i)
    test = WildsFolder('fmow', tmp_path, 'test', size=16)
    assert [p.name for p in test.paths] == ['rgb_img_2.png', 'rgb_img_3.png']           # row numbers of the full CSV
    assert test.classes == ['airport', 'zoo'] and test.y.tolist() == [0, 1]
    names = [test.group_names[g] for g in test.groups]
    assert names == ['Europe', 'Other']
    assert len(WildsFolder('fmow', tmp_path, 'val', size=16)) == 1 and len(WildsFolder('fmow', tmp_path, 'train', size=16)) == 1
    m = wilds_metrics(torch.tensor([0, 0]), test.y, test.groups, 'fmow', test.group_names)
    assert m['worst'] == 1.0 and m['worst_group'] == 'Europe'                          # 'Other' is not a region

def test_missing_folder_says_how_to_get_it(tmp_path):
    with pytest.raises(FileNotFoundError, match='download camelyon17'): WildsFolder('camelyon17', tmp_path)
    with pytest.raises(ValueError, match='unknown WILDS dataset'): WildsFolder('imagenet', tmp_path)
