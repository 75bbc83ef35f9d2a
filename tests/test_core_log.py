"""``ipc.log``: node-ipc's joining rule, pretty-printing to ``log_depth``, ``silent``,
``log_in_color``, ``config.logger``, the colour theme and its overrides."""
import pytest

from geventipc import IPC
from conftest import python_process, read_line, stop_process

ESC = "\x1b["


def make(**config):
    lines = []
    inst = IPC(logger=lines.append, **config)
    return inst, lines


def test_joins_arguments_with_one_space():
    ipc, lines = make(log_in_color=False)
    ipc.log("got a message:", "hello", 42, None, b"x", [1, 2])
    assert lines == ["got a message: hello 42 None b'x' [1, 2]"]


def test_objects_are_pretty_printed_to_log_depth():
    ipc, lines = make(log_in_color=False, log_depth=2)
    ipc.log({"a": {"b": {"c": {"d": 1}}}})
    assert lines == ["{'a': {'b': {...}}}"]
    ipc.config.logDepth = 5
    ipc.log({"a": {"b": {"c": {"d": 1}}}})
    assert lines[1] == "{'a': {'b': {'c': {'d': 1}}}}"


def test_long_objects_wrap_over_lines():
    ipc, lines = make(log_in_color=False)
    ipc.log("data", {f"key{i}": "v" * 20 for i in range(10)})
    assert lines[0].startswith("data {'key0'") and "\n" in lines[0]


def test_silent_does_nothing_at_all():
    class Loud:
        def __repr__(self):
            raise AssertionError("formatted while silent")

    ipc, lines = make(silent=True)
    ipc.log("x", Loud())
    assert lines == []
    ipc.config.silent = False
    ipc.log("y")
    assert lines == ["y"]


def test_theme_tags_in_colour():
    ipc, lines = make(log_in_color=True)
    ipc.log("<debug>got a message:</debug>", "hello")
    assert lines == [f"{ESC}35mgot a message:{ESC}0m hello"]


@pytest.mark.parametrize("name, code", [
    ("good", "32"), ("notice", "33"), ("warn", "31"), ("error", "41"), ("debug", "35"),
    ("variable", "36"), ("data", "34"),
])
def test_documented_theme(name, code):
    ipc, lines = make(log_in_color=True)
    ipc.log(f"<{name}>text</{name}>")
    assert lines == [f"{ESC}{code}mtext{ESC}0m"]


def test_log_in_color_false_gives_plain_text():
    ipc, lines = make(log_in_color=False)
    ipc.log("<good>fine</good>", "<error>bad</error>")
    assert lines == ["fine bad"]
    assert ESC not in lines[0]


def test_style_helper_wraps_values():
    ipc, lines = make(log_in_color=True)
    ipc.log("from", ipc.log.style("variable", {"id": 1}))
    assert lines == [f"from {ESC}36m{{'id': 1}}{ESC}0m"]
    with pytest.raises(KeyError):
        ipc.log.style("nope", 1)


def test_theme_override_per_name_and_new_names():
    ipc, lines = make(log_in_color=True)
    ipc.log.set_theme(good="blue", notice="redBG", shout="bold")
    ipc.log("<good>a</good>", "<notice>b</notice>", "<shout>c</shout>")
    assert lines == [f"{ESC}34ma{ESC}0m {ESC}41mb{ESC}0m {ESC}1mc{ESC}0m"]
    with pytest.raises(ValueError, match="unknown colour"):
        ipc.log.set_theme(good="zebra-ish")
    other, other_lines = make(log_in_color=True)
    other.log("<good>a</good>")                    # themes are per instance
    assert other_lines == [f"{ESC}32ma{ESC}0m"]


def test_other_angle_brackets_are_printed_not_interpreted():
    ipc, lines = make(log_in_color=True)
    ipc.log("<b>not a tag</b>", "<red>nor this</red>", "a < b", {"k": "<good>"})
    assert lines == ["<b>not a tag</b> <red>nor this</red> a < b {'k': '<good>'}"]


def test_unbalanced_theme_tag_is_printed_as_is():
    ipc, lines = make(log_in_color=True)
    ipc.log("<good>never closed")
    assert lines == ["<good>never closed"]


def test_logger_can_be_changed_at_any_time():
    first, second = [], []
    ipc = IPC(logger=first.append, log_in_color=False)
    ipc.log("one")
    ipc.config.logger = second.append
    ipc.log("two")
    ipc.config.log_in_color = True
    ipc.log("<good>three</good>")
    assert first == ["one"] and second == ["two", f"{ESC}32mthree{ESC}0m"]


def test_the_librarys_own_diagnostics_use_the_same_path(tmp_path):
    lines = []
    ipc = IPC(id="hello", socket_root=str(tmp_path), logger=lines.append,
              log_in_color=False, max_retries=0)
    client = ipc.connect_to("nobody")
    from conftest import wait_until
    wait_until(lambda: client.destroyed, message="destroy")
    assert any("ConnectError" in line and "does not exist" in line for line in lines)


def test_default_output_is_stderr_plain_in_a_pipe():
    # a pipe is no terminal: no colour codes (the terminal case: tests/test_log_output.py)
    proc = python_process('''
from geventipc import ipc
ipc.log("<good>to stderr</good>", 1)
print("DONE", flush=True)
''')
    try:
        assert read_line(proc) == "DONE"
        proc.wait(5)
        assert proc.stderr.read() == "to stderr 1\n"
    finally:
        stop_process(proc)


@pytest.mark.parametrize("style, code", [
    ("redBG", "41"), ("bgRed", "41"), ("blueBG", "44"), ("bgBrightRed", "101"),
    ("brightRedBG", "101"), ("brightGreen", "92"), ("gray", "90"), ("grey", "90"),
    ("bold", "1"), ("italic", "3"), ("underline", "4"), ("inverse", "7"),
    ("strikethrough", "9"), ("light-red", "91"), ("bg red", "41"),
])
def test_colors_js_and_loguru_style_names(style, code):
    ipc, lines = make(log_in_color=True)
    ipc.log.set_theme(good=style)
    ipc.log("<good>x</good>")
    assert lines == [f"{ESC}{code}mx{ESC}0m"]


def test_colors_js_effects_are_refused_with_a_hint():
    ipc, _lines = make()
    with pytest.raises(ValueError, match="multi-colour effects"):
        ipc.log.set_theme(good="zebra")          # the seed's own example
    assert ipc.log.theme["good"] == "green"


def test_theme_dict_changed_directly_takes_effect():
    ipc, lines = make(log_in_color=True)
    ipc.log("<good>a</good>")
    ipc.log.theme["good"] = "blue"
    ipc.log.theme["shout"] = "bold"
    ipc.log("<good>b</good>", "<shout>c</shout>")
    assert lines == [f"{ESC}32ma{ESC}0m", f"{ESC}34mb{ESC}0m {ESC}1mc{ESC}0m"]
