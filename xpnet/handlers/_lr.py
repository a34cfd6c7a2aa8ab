"""Changing the learning rate from a handler: one rule for with and without a scheduler.

The rule (documented in ReduceLROnPlateauHandler and LRWarmupHandler): without an
``lr_scheduler`` the handlers own the Trainer's learning rate; with one, the scheduler owns
it and a handler's change *multiplies the rest of the schedule*: the scheduler's
learning-rate fields (``base_lr``, and where present ``base_lr_orig``, ``final_lr``,
``warmup_begin_lr``, ``warmup_final_lr``, ``stop_factor_lr``) are scaled, so every later
value of every built-in schedule is scaled by the same factor and the schedule's own steps
continue. Both live in the trainer's state, so checkpoints keep them.
"""
import numbers

__all__ = ['has_scheduler', 'change_learning_rate']

_SCHEDULE_FIELDS = ('base_lr', 'base_lr_orig', 'final_lr', 'warmup_begin_lr',
                    'warmup_final_lr', 'stop_factor_lr')


def has_scheduler(trainer):
    return getattr(trainer.optimizer, 'lr_scheduler', None) is not None


def change_learning_rate(trainer, old, new, owner):
    """Take ``trainer``'s learning rate from ``old`` to ``new``: set it, or, with a
    scheduler, scale the rest of the schedule by ``new / old``."""
    scheduler = getattr(trainer.optimizer, 'lr_scheduler', None)
    if scheduler is None:
        trainer.set_learning_rate(new)
        return
    ratio = new / old
    if not isinstance(getattr(scheduler, 'base_lr', None), numbers.Real):
        raise ValueError(f'{owner}: the trainer\'s lr_scheduler {type(scheduler).__name__} has '
                         'no base_lr to scale; use a scheduler derived from '
                         'xpnet.lr_scheduler.LRScheduler')
    for field in _SCHEDULE_FIELDS:
        value = getattr(scheduler, field, None)
        if isinstance(value, numbers.Real) and not isinstance(value, bool):
            setattr(scheduler, field, value * ratio)
