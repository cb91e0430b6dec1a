"The documentation site builds offline from the notebooks, with a page per notebook, its API sections and stored plots."
import json, os, re, subprocess
from pathlib import Path
import pytest

ROOT = Path(__file__).resolve().parents[1]

@pytest.fixture(scope='module')
def site():
    p = subprocess.run(['bash', 'tools/build_docs.sh'], cwd=ROOT, capture_output=True, text=True, timeout=900,
                       env={**os.environ, 'ARCLF_DOCS_OFFLINE': '1'})
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-2000:]
    return ROOT/'_docs'

def notebooks(): return sorted(p for p in (ROOT/'nbs').glob('*.ipynb') if not p.name.startswith('_'))

def test_a_page_per_notebook(site):
    for nb in notebooks():
        page = site/(nb.stem + '.html')
        assert page.exists(), f'no page for {nb.name}'
        title = json.loads(nb.read_text())['cells'][0]['source'][0].lstrip('# ').strip()
        assert title.split(':')[0] in page.read_text(), f'{page.name} lacks its title {title!r}'

def test_api_sections(site):
    "Every exported class/function named in __all__ of a module has an anchored section on its notebook's page."
    for nb in notebooks():
        src = nb.read_text()
        m = re.search(r'#\| default_exp (\w+)', src)
        if not m: continue
        mod = (ROOT/'arclf'/f'{m.group(1)}.py').read_text()
        names = re.findall(r"'(\w+)'", re.search(r'__all__ = \[(.*?)\]', mod, re.S).group(1))
        html = (site/(nb.stem + '.html')).read_text()
        callables = [n for n in names if re.search(rf'^(def|class) {n}\b', mod, re.M)]
        missing = [n for n in callables if f'id="{n.lower()}"' not in html]
        assert not missing, f'{nb.name}: no API section for {missing}'

def test_stored_plots_rendered(site):
    "A notebook that stores a plot shows it on its page."
    for nb in notebooks():
        d = json.loads(nb.read_text())
        n_png = sum('image/png' in o.get('data', {}) for c in d['cells'] for o in c.get('outputs', []))
        if n_png:
            html = (site/(nb.stem + '.html')).read_text()
            assert html.count('<img') >= 1, f'{nb.name} stores {n_png} plot(s) but its page shows none'
