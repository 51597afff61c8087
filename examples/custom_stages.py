"""Research code: build stages by hand and drive the shared loop.

Supervised sequential transfer in a dozen lines (STILTs-style): train on an intermediate labelled
task (builtin/entailment), then adapt to the target (builtin/sentiment) with gradual unfreezing,
discriminative learning rates and a slanted triangular schedule — one model, two stages, one
trainer, one workdir.

    python examples/custom_stages.py /tmp/stilts
"""

import sys

from flax import nnx

from jaxtl import config as config_lib
from jaxtl import train
from jaxtl.data import feed
from jaxtl.regimes import common


def main(workdir: str, model: str = "minilm", source_steps: int = 60, target_steps: int = 70):
    c = config_lib.base_config()
    c.model.name = model
    c.train.progress = False
    c.data.max_train_examples = 600
    c.data.max_eval_examples = 200
    mesh = common.setup_mesh(c)
    pre = common.load_encoder(c)
    source, target = common.prepare_tasks(
        ["builtin/entailment", "builtin/sentiment"], c, pre.tokenizer
    )
    net = common.build_model(pre.model, [source, target], c)
    params = nnx.to_pure_dict(nnx.state(net, nnx.Param))

    def stage(name, td, optim, steps):
        return train.Stage(
            name=name,
            steps=steps,
            feed=feed.MixtureFeed([td.task.name], [td.train_iter], task_ids=[td.index]),
            loss_fn=common.multitask_loss([source, target]),
            predict_fn=common.multitask_predict([source, target]),
            optim=optim,
            eval_sets=common.eval_sets([td]),
            active_fn=common.heads_active_fn(params, [source, target]),
        )

    first = config_lib.base_config().optim
    first.lr = 1e-4
    second = config_lib.base_config().optim
    second.update(strategy="gradual_unfreezing", discriminative=1 / 2.6, schedule="stlr", lr=2e-4)

    stages = [
        stage("source", source, first, source_steps),
        stage("target", target, second, target_steps),
    ]
    results = common.run_stages(net, stages, c, workdir, mesh)
    print(common.results_table(results))
    return results


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "runs/example-stilts")
