"""Run code in a fresh Python process that cannot import the project, the way a Hub user loads a checkpoint."""

import json
import os
import subprocess
import sys
import textwrap


def run_fresh(code: str, cwd, timeout: int = 300) -> dict:
    """Run `code` offline in a new interpreter whose cwd is `cwd` and whose sys.path lacks the repo.

    The code must print one JSON object on its last stdout line; it is returned. The child fails if
    `modeling_asda` gets imported (transformers >= 5.5 prefers in-process registrations over auto_map,
    which would hide broken remote code).
    """
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    prologue = textwrap.dedent(
        f"""
        import sys
        sys.path = [p for p in sys.path if p not in ("", ".", {repo!r})]
        """
    )
    epilogue = textwrap.dedent(
        """
        assert not any(name == "modeling_asda" or name.startswith("modeling_asda.") for name in sys.modules), \
            "the fresh process imported modeling_asda"
        """
    )
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", HF_DATASETS_OFFLINE="1")
    env["HF_MODULES_CACHE"] = os.path.join(str(cwd), "hf_modules")
    env.pop("PYTHONPATH", None)
    result = subprocess.run(
        [sys.executable, "-c", prologue + textwrap.dedent(code) + epilogue],
        cwd=str(cwd),
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if result.returncode != 0:
        raise AssertionError(f"fresh process failed:\n{result.stdout[-3000:]}\n{result.stderr[-5000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])
