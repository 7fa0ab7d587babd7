from . import cosmosqa  # noqa: F401
from . import span_qa  # noqa: F401
from . import entity_typing  # noqa: F401
from . import tacred  # noqa: F401
from . import relation_pretrain  # noqa: F401
from . import dependency_head_prediction  # noqa: F401
from . import knowledge_mlm  # noqa: F401
