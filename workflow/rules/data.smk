# The expert and its demonstrations, per game.


rule train_expert:
    output:
        expert=GAME_DIR + "/expert/expert.pt",
        summary=GAME_DIR + "/expert/summary.json",
    log:
        "logs/{game}/train_expert.log",
    benchmark:
        RES + "/benchmarks/{game}/train_expert.tsv"
    params:
        ppo=lambda wc: " ".join(
            f"--{key.replace('_', '-')} {value}"
            for key, value in ATARI["expert"].items()
            if key != "threads"
        ),
        seed=config["seed"],
    threads: ATARI["expert"]["threads"] if ATARI else 1
    resources:
        runtime=requested(expert_request, "runtime"),
        mem_mb=requested(expert_request, "mem_mb"),
        gpu=requested(expert_request, "gpu"),
    conda:
        CONDA_ENV
    shell:
        "{ILSCALING} train-expert --game {wildcards.game} {params.ppo} --seed {params.seed} "
        "--num-threads {threads} --out {output.expert} --summary {output.summary} > {log} 2>&1"


rule record_demonstrations:
    input:
        expert=rules.train_expert.output.expert,
    output:
        train=GAME_DIR + "/demos/train.npz",
        heldout=GAME_DIR + "/demos/heldout.npz",
        card=GAME_DIR + "/demos/card.json",
    log:
        "logs/{game}/record_demonstrations.log",
    benchmark:
        RES + "/benchmarks/{game}/record_demonstrations.tsv"
    params:
        demos=ATARI.get("demonstrations"),
        greedy=lambda wc: "--greedy" if ATARI["demonstrations"]["greedy"] else "--no-greedy",
        seed=config["seed"],
    threads: 2
    resources:
        runtime=requested(demonstrations_request, "runtime"),
        mem_mb=requested(demonstrations_request, "mem_mb"),
        gpu=requested(demonstrations_request, "gpu"),
    conda:
        CONDA_ENV
    shell:
        "{ILSCALING} record-demos --expert {input.expert} --out-dir $(dirname {output.card}) "
        "--frames {params.demos[frames]} --heldout-fraction {params.demos[heldout_fraction]} "
        "--num-envs {params.demos[num_envs]} --max-episode-steps {params.demos[max_episode_steps]} "
        "--seed {params.seed} --threads {threads} {params.greedy} > {log} 2>&1"


rule record_nethack_bot:
    output:
        ttyrecs=directory(NH_DIR + "/bot"),
    log:
        "logs/NetHack/record_nethack_bot.log",
    benchmark:
        RES + "/benchmarks/NetHack/record_nethack_bot.tsv"
    params:
        games=NH["bot"]["games"] if NH else None,
        max_episode_steps=NH["bot"]["max_episode_steps"] if NH else None,
        env=NH["bot"]["env"] if NH else None,
        character=NH.get("character"),
        seed=config["seed"],
    threads: NH["bot"]["processes"] if NH else 1  # the games do not depend on it
    resources:
        mem_mb=lambda wc, threads: 1000 + 500 * threads,
    conda:
        CONDA_ENV
    shell:
        "{ILSCALING} record-nethack --out-dir {output.ttyrecs} --games {params.games} --processes {threads} "
        "--max-episode-steps {params.max_episode_steps} --character {params.character} "
        "--seed {params.seed} --env {params.env} > {log} 2>&1"


rule build_nethack_dataset:
    input:
        ttyrecs=nethack_ttyrecs,
    output:
        db=NH_DIR + "/data/nld.db",
        split=NH_DIR + "/data/split.json",
        card=NH_DIR + "/data/card.json",
    log:
        "logs/NetHack/build_nethack_dataset.log",
    benchmark:
        RES + "/benchmarks/NetHack/build_nethack_dataset.tsv"
    params:
        dataset=NH.get("dataset"),
        batch_size=NH["bc"]["batch_size"] if NH else 1,
        filter=lambda wc: f'--filter "{NH["dataset"]["filter"]}"' if NH["dataset"]["filter"] else "",
        bot_card=lambda wc, input: f"--bot-card {input.ttyrecs}/card.json" if NH["dataset"]["source"] == "bot" else "",
        seed=config["seed"],
    resources:
        runtime=requested(nethack_dataset_request, "runtime"),
        mem_mb=requested(nethack_dataset_request, "mem_mb"),
    conda:
        CONDA_ENV
    shell:
        "{ILSCALING} build-nethack-dataset --root {input.ttyrecs} --name {params.dataset[name]} "
        "--db {output.db} --split {output.split} --card {output.card} {params.filter} {params.bot_card} "
        "--heldout-fraction {params.dataset[heldout_fraction]} --batch-size {params.batch_size} --seed {params.seed} "
        "> {log} 2>&1"
