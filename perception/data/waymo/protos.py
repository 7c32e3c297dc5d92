"""The Waymo Open Dataset protobuf messages we use, built at run time without TensorFlow.

The messages are declared here as Python data (``descriptor_pb2`` protos), registered in a
private :class:`~google.protobuf.descriptor_pool.DescriptorPool` and turned into message classes
with :func:`~google.protobuf.message_factory.GetMessageClass`. Only the ``protobuf`` package is
needed: no ``*_pb2`` modules, no ``waymo-open-dataset`` wheel, no TensorFlow.

Package ``waymo.open_dataset``, proto2, with the official field names, numbers and types of the
public schema (``dataset.proto``, ``label.proto``, ``protos/metrics.proto``), so the bytes are
compatible with the official tools in both directions. A subset is declared:

- ``dataset.proto``: ``MatrixShape``, ``MatrixFloat`` (packed), ``MatrixInt32`` (packed),
  ``CameraName``/``LaserName`` (with their ``Name`` enums), ``Transform``, ``Velocity``,
  ``CameraCalibration``, ``LaserCalibration``, ``Context`` (with ``Stats``), ``RangeImage``,
  ``CameraImage``, ``CameraLabels``, ``Laser``, ``Frame``.
- ``label.proto``: ``Label`` (``Box``, ``Metadata``, ``Association``, the ``Type`` and
  ``DifficultyLevel`` enums; the ``keypoints_oneof`` fields 8 and 9 are not declared),
  ``Polygon2dProto``.
- ``protos/metrics.proto``: ``Object``, ``NoLabelZoneObject``, ``Objects`` (the submission
  ``.bin`` format).

Fields that are not declared (keypoints, fields added to the schema later) are kept as unknown
fields by proto2 parsing, and written back unchanged by ``SerializeToString``.

Enum values are class attributes as in generated code: ``Label.TYPE_VEHICLE == 1``,
``Label.Type.Name(1) == "TYPE_VEHICLE"``, ``LaserName.TOP == 1``.
"""

from __future__ import annotations

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

__all__ = [
    "DESCRIPTOR_POOL",
    "FILE_NAME",
    "PACKAGE",
    "CameraCalibration",
    "CameraImage",
    "CameraLabels",
    "CameraName",
    "Context",
    "Frame",
    "Label",
    "Laser",
    "LaserCalibration",
    "LaserName",
    "MatrixFloat",
    "MatrixInt32",
    "MatrixShape",
    "NoLabelZoneObject",
    "Object",
    "Objects",
    "Polygon2dProto",
    "RangeImage",
    "Transform",
    "Velocity",
    "file_descriptor_proto",
]

PACKAGE = "waymo.open_dataset"
FILE_NAME = "perception/waymo_open_dataset_subset.proto"

_F = descriptor_pb2.FieldDescriptorProto
_SCALARS = {
    "double": _F.TYPE_DOUBLE,
    "float": _F.TYPE_FLOAT,
    "int64": _F.TYPE_INT64,
    "int32": _F.TYPE_INT32,
    "bool": _F.TYPE_BOOL,
    "string": _F.TYPE_STRING,
    "bytes": _F.TYPE_BYTES,
}
_LABELS = {"optional": _F.LABEL_OPTIONAL, "repeated": _F.LABEL_REPEATED}

# Every enum of the subset, by its name relative to the package (message types are the rest).
_ENUMS = {
    "CameraName.Name",
    "LaserName.Name",
    "CameraCalibration.RollingShutterReadOutDirection",
    "Label.Type",
    "Label.Box.Type",
    "Label.DifficultyLevel",
}

# A message: (name, fields, nested messages, enums). A field: "label type name = number" with an
# optional trailing "[packed]" or "[default=VALUE]". An enum: (name, ((value_name, number), ...)).
_Msg = tuple


def _msg(name: str, fields: tuple[str, ...] = (), nested: tuple[_Msg, ...] = (), enums: tuple = ()) -> _Msg:
    return (name, fields, nested, enums)


_BOX = _msg(
    "Box",
    (
        "optional double center_x = 1",
        "optional double center_y = 2",
        "optional double center_z = 3",
        "optional double length = 5",
        "optional double width = 4",
        "optional double height = 6",
        "optional double heading = 7",
    ),
    enums=(("Type", (("TYPE_UNKNOWN", 0), ("TYPE_3D", 1), ("TYPE_2D", 2), ("TYPE_AA_2D", 3))),),
)

_MESSAGES: tuple[_Msg, ...] = (
    # ---- label.proto
    _msg(
        "Label",
        (
            "optional Label.Box box = 1",
            "optional Label.Metadata metadata = 2",
            "optional Label.Type type = 3",
            "optional string id = 4",
            "optional Label.DifficultyLevel detection_difficulty_level = 5",
            "optional Label.DifficultyLevel tracking_difficulty_level = 6",
            "optional int32 num_lidar_points_in_box = 7",
            # 8, 9: keypoints_oneof (laser_keypoints, camera_keypoints) -- kept as unknown fields
            "optional Label.Association association = 10",
            "optional string most_visible_camera_name = 11",
            "optional Label.Box camera_synced_box = 12",
            "optional int32 num_top_lidar_points_in_box = 13",
        ),
        nested=(
            _BOX,
            _msg(
                "Metadata",
                (
                    "optional double speed_x = 1",
                    "optional double speed_y = 2",
                    "optional double speed_z = 5",
                    "optional double accel_x = 3",
                    "optional double accel_y = 4",
                    "optional double accel_z = 6",
                ),
            ),
            _msg("Association", ("optional string laser_object_id = 1",)),
        ),
        enums=(
            (
                "Type",
                (
                    ("TYPE_UNKNOWN", 0),
                    ("TYPE_VEHICLE", 1),
                    ("TYPE_PEDESTRIAN", 2),
                    ("TYPE_SIGN", 3),
                    ("TYPE_CYCLIST", 4),
                ),
            ),
            ("DifficultyLevel", (("UNKNOWN", 0), ("LEVEL_1", 1), ("LEVEL_2", 2))),
        ),
    ),
    _msg(
        "Polygon2dProto",
        ("repeated double x = 1", "repeated double y = 2", "optional string id = 3"),
    ),
    # ---- dataset.proto
    _msg("MatrixShape", ("repeated int32 dims = 1",)),
    _msg("MatrixFloat", ("repeated float data = 1 [packed]", "optional MatrixShape shape = 2")),
    _msg("MatrixInt32", ("repeated int32 data = 1 [packed]", "optional MatrixShape shape = 2")),
    _msg(
        "CameraName",
        enums=(
            (
                "Name",
                (
                    ("UNKNOWN", 0),
                    ("FRONT", 1),
                    ("FRONT_LEFT", 2),
                    ("FRONT_RIGHT", 3),
                    ("SIDE_LEFT", 4),
                    ("SIDE_RIGHT", 5),
                ),
            ),
        ),
    ),
    _msg(
        "LaserName",
        enums=(
            (
                "Name",
                (("UNKNOWN", 0), ("TOP", 1), ("FRONT", 2), ("SIDE_LEFT", 3), ("SIDE_RIGHT", 4), ("REAR", 5)),
            ),
        ),
    ),
    _msg("Transform", ("repeated double transform = 1",)),
    _msg(
        "Velocity",
        (
            "optional float v_x = 1",
            "optional float v_y = 2",
            "optional float v_z = 3",
            "optional double w_x = 4",
            "optional double w_y = 5",
            "optional double w_z = 6",
        ),
    ),
    _msg(
        "CameraCalibration",
        (
            "optional CameraName.Name name = 1",
            "repeated double intrinsic = 2",
            "optional Transform extrinsic = 3",
            "optional int32 width = 4",
            "optional int32 height = 5",
            "optional CameraCalibration.RollingShutterReadOutDirection rolling_shutter_direction = 6",
        ),
        enums=(
            (
                "RollingShutterReadOutDirection",
                (
                    ("UNKNOWN", 0),
                    ("TOP_TO_BOTTOM", 1),
                    ("LEFT_TO_RIGHT", 2),
                    ("BOTTOM_TO_TOP", 3),
                    ("RIGHT_TO_LEFT", 4),
                    ("GLOBAL_SHUTTER", 5),
                ),
            ),
        ),
    ),
    _msg(
        "LaserCalibration",
        (
            "optional LaserName.Name name = 1",
            "repeated double beam_inclinations = 2",
            "optional double beam_inclination_min = 3",
            "optional double beam_inclination_max = 4",
            "optional Transform extrinsic = 5",
        ),
    ),
    _msg(
        "Context",
        (
            "optional string name = 1",
            "repeated CameraCalibration camera_calibrations = 2",
            "repeated LaserCalibration laser_calibrations = 3",
            "optional Context.Stats stats = 4",
        ),
        nested=(
            _msg(
                "Stats",
                (
                    "repeated Context.Stats.ObjectCount laser_object_counts = 1",
                    "optional string time_of_day = 2",
                    "optional string location = 3",
                    "optional string weather = 4",
                    "repeated Context.Stats.ObjectCount camera_object_counts = 5",
                ),
                nested=(_msg("ObjectCount", ("optional Label.Type type = 1", "optional int32 count = 2")),),
            ),
        ),
    ),
    _msg(
        "RangeImage",
        (
            "optional MatrixFloat range_image = 1",  # deprecated in the schema
            "optional bytes range_image_compressed = 2",
            "optional bytes camera_projection_compressed = 3",
            "optional bytes range_image_pose_compressed = 4",
        ),
    ),
    _msg(
        "CameraImage",
        (
            "optional CameraName.Name name = 1",
            "optional bytes image = 2",
            "optional Transform pose = 3",
            "optional Velocity velocity = 4",
            "optional double pose_timestamp = 5",
            "optional double shutter = 6",
            "optional double camera_trigger_time = 7",
            "optional double camera_readout_done_time = 8",
        ),
    ),
    _msg("CameraLabels", ("optional CameraName.Name name = 1", "repeated Label labels = 2")),
    _msg(
        "Laser",
        (
            "optional LaserName.Name name = 1",
            "optional RangeImage ri_return1 = 2",
            "optional RangeImage ri_return2 = 3",
        ),
    ),
    _msg(
        "Frame",
        (
            "optional Context context = 1",
            "optional int64 timestamp_micros = 2",
            "optional Transform pose = 3",
            "repeated CameraImage images = 4",
            "repeated Laser lasers = 5",
            "repeated Label laser_labels = 6",
            "repeated Polygon2dProto no_label_zones = 7",
            "repeated CameraLabels camera_labels = 8",
            "repeated CameraLabels projected_lidar_labels = 9",
        ),
    ),
    # ---- protos/metrics.proto
    _msg(
        "Object",
        (
            "optional Label object = 1",
            "optional float score = 2 [default=1.0]",
            "optional bool overlap_with_nlz = 3",
            "optional string context_name = 4",
            "optional int64 frame_timestamp_micros = 5",
            "optional CameraName.Name camera_name = 6",
        ),
    ),
    _msg(
        "NoLabelZoneObject",
        (
            "optional Polygon2dProto zone = 1",
            "optional string context_name = 2",
            "optional int64 frame_timestamp_micros = 3",
        ),
    ),
    _msg(
        "Objects",
        ("repeated Object objects = 1", "repeated NoLabelZoneObject no_label_zone_objects = 2"),
    ),
)


def _field(spec: str) -> descriptor_pb2.FieldDescriptorProto:
    """``"repeated float data = 1 [packed]"`` → a FieldDescriptorProto."""
    head, _, option = spec.partition("[")
    decl, _, number = head.partition("=")
    label, type_, name = decl.split()
    field = _F(name=name, number=int(number), label=_LABELS[label])
    if type_ in _SCALARS:
        field.type = _SCALARS[type_]
    else:
        field.type = _F.TYPE_ENUM if type_ in _ENUMS else _F.TYPE_MESSAGE
        field.type_name = f".{PACKAGE}.{type_}"
    option = option.rstrip("] ")
    if option == "packed":
        field.options.packed = True
    elif option.startswith("default="):
        field.default_value = option.removeprefix("default=")
    elif option:
        raise ValueError(f"unknown field option in {spec!r}")
    return field


def _message(spec: _Msg) -> descriptor_pb2.DescriptorProto:
    name, fields, nested, enums = spec
    message = descriptor_pb2.DescriptorProto(name=name)
    message.field.extend(_field(f) for f in fields)
    message.nested_type.extend(_message(n) for n in nested)
    for enum_name, values in enums:
        enum = message.enum_type.add(name=enum_name)
        for value_name, number in values:
            enum.value.add(name=value_name, number=number)
    return message


def file_descriptor_proto() -> descriptor_pb2.FileDescriptorProto:
    """The ``FileDescriptorProto`` that declares every message of this module (a fresh copy)."""
    file = descriptor_pb2.FileDescriptorProto(name=FILE_NAME, package=PACKAGE, syntax="proto2")
    file.message_type.extend(_message(m) for m in _MESSAGES)
    return file


DESCRIPTOR_POOL = descriptor_pool.DescriptorPool()
"""The private pool holding this module's descriptors (not the default pool, so the official
``*_pb2`` modules can be imported in the same process without a name clash)."""
DESCRIPTOR_POOL.AddSerializedFile(file_descriptor_proto().SerializeToString())


def _class(name: str) -> type:
    return message_factory.GetMessageClass(DESCRIPTOR_POOL.FindMessageTypeByName(f"{PACKAGE}.{name}"))


MatrixShape = _class("MatrixShape")
MatrixFloat = _class("MatrixFloat")
MatrixInt32 = _class("MatrixInt32")
CameraName = _class("CameraName")
LaserName = _class("LaserName")
Transform = _class("Transform")
Velocity = _class("Velocity")
CameraCalibration = _class("CameraCalibration")
LaserCalibration = _class("LaserCalibration")
Context = _class("Context")
RangeImage = _class("RangeImage")
CameraImage = _class("CameraImage")
CameraLabels = _class("CameraLabels")
Laser = _class("Laser")
Frame = _class("Frame")
Label = _class("Label")
Polygon2dProto = _class("Polygon2dProto")
Object = _class("Object")
NoLabelZoneObject = _class("NoLabelZoneObject")
Objects = _class("Objects")
