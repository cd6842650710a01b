import numpy as np
from tests.test_busy_scenes import *
from models.audio import AudioActivity
audio0 = machine(34, seed=1)
rms = float(np.sqrt(np.mean(audio0[: 30 * SR] ** 2)))
level = 20 * np.log10(rms) + 12
for fmin, gp in ((80.0, None), (80.0, 6.0), (80.0, 4.0), (80.0, 8.0)):
    row = []
    for hz in (400, 700, 1000, 1500, 2000, 2500, 3000, 3500, 4000, 5000, 6000):
        model = FusionModel(tau=TAU, audio=AudioActivity(16000, window=8.0, f_min=fmin, group_power=gp))
        slot = model.add_stream(*WEIGHTS)
        audio = audio0.copy(); audio[30 * SR : 31 * SR] += tone(1, level, hz=hz)
        out = run(model, [timestep(k, None, audio) for k in range(310)], slot)
        row.append(f"{hz}:{np.median(out['s_a'][301:310]):.2f}")
    print(fmin, gp, " ".join(row))
