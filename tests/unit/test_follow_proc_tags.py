"""Follow mode's process check takes --proc-tags, on the command line and in the TOML config."""

from __future__ import annotations

from pathlib import Path

from logpipe.checks.gunicorn_processes import proc_tags
from logpipe.cli.config import apply_config
from logpipe.cli.follow import build_parser


def test_proc_tags_in_follow_options_and_the_toml_config(tmp_path: Path) -> None:
    parser = build_parser()
    config = tmp_path / "logpipe.toml"
    config.write_text('proc-name = ["web"]\nproc-tags = ["web:team:shop,tier:front"]\n')
    apply_config(parser, str(config))
    args = parser.parse_args(["--access", "a.log", "--proc-tags", "web:extra:1"])
    assert proc_tags(args.proc_tags, args.proc_name) == {
        "web": ("team:shop", "tier:front", "extra:1")
    }
