"""Research code: build stages by hand and drive the shared loop.

Supervised sequential transfer in a dozen lines (STILTs-style): train on an intermediate labelled
task (builtin/entailment), then adapt to the target (builtin/sentiment) with gradual unfreezing,
discriminative learning rates and a slanted triangular schedule — one model, two stages, one
trainer, one workdir.

    python examples/custom_stages.py /tmp/stilts
"""

import sys

from jaxtl import config as config_lib
from jaxtl import objectives, stages, train
from jaxtl.data import feed
from jaxtl.run import finish, prepare


def main(workdir: str, model: str = "minilm", source_steps: int = 60, target_steps: int = 70):
    c = config_lib.base_config()
    c.model.name = model
    c.train.progress = False
    c.data.max_train_examples = 600
    c.data.max_eval_examples = 200
    first = config_lib.base_config().optim
    first.lr = 1e-4
    second = config_lib.base_config().optim
    second.update(strategy="gradual_unfreezing", discriminative=1 / 2.6, schedule="stlr", lr=2e-4)

    # Mesh, encoder, both tasks tokenised, one model with a head per task.
    run = prepare(c, workdir, ["builtin/entailment", "builtin/sentiment"], optims=(first, second))
    source, target = run.tasks

    def stage(name, td, optim, steps):
        return train.Stage(
            name=name,
            steps=steps,
            feed=feed.MixtureFeed([td.task.name], [td.train_iter], task_ids=[td.index]),
            loss_fn=objectives.switch_loss(run.tasks),
            predict_fn=objectives.switch_predict(run.tasks),
            optim=optim,
            eval_sets=stages.eval_sets([td]),
            active_fn=objectives.heads_active_fn(run.params, run.tasks),
        )

    plan = [
        stage("source", source, first, source_steps),
        stage("target", target, second, target_steps),
    ]
    return finish(run, plan, "custom stages: dev results")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "runs/example-stilts")
