"""A multi-label task from a tagged corpus: which entity types each CoNLL-2003 sentence names.

Reads CoNLL-2003 through jaxtl's own reader and writes ``{train,dev,test}.tsv`` with a header
``sentence<TAB>types``, the types comma-separated (``LOC,PER``; empty when a sentence names
none), the layout a ``kind=multilabel`` file task reads:

    python examples/conll_entity_types.py ../shared/data /tmp/conll_types
    python launch.py --regime=multitask --config.train.epochs=2 \\
        --config.tasks.names='file:name=conll_types,path=/tmp/conll_types/{split}.tsv,text=sentence,label=types,kind=multilabel'
"""

import os
import sys

from jaxtl.data import get_task


def main(data_dir: str, out_dir: str) -> dict[str, int]:
    """Write the three files; returns the sentences written per split."""
    task = get_task("conll2003", data_dir)
    os.makedirs(out_dir, exist_ok=True)
    written = {}
    for split in task.splits:
        rows = ["sentence\ttypes"]
        for ex in task.load(split):
            types = sorted({tag[2:] for tag in ex.label if tag != "O"})
            rows.append(f"{' '.join(ex.words)}\t{','.join(types)}")
        with open(os.path.join(out_dir, f"{split}.tsv"), "w", encoding="utf-8") as f:
            f.write("\n".join(rows) + "\n")
        written[split] = len(rows) - 1
    return written


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: python examples/conll_entity_types.py DATA_DIR OUT_DIR")
    for split, n in main(sys.argv[1], sys.argv[2]).items():
        print(f"{split}: {n} sentences")
