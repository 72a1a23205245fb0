// The Python module pyfit._C: importing it loads this library, whose static
// initialisers register the ops with the dispatcher. It defines no Python functions
// (the ops are reached as torch.ops.pyfit.*), so it needs only CPython's C API and
// not libtorch_python.
#include <Python.h>

extern "C" PyObject* PyInit__C(void) {
  static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_C", nullptr, -1, nullptr};
  return PyModule_Create(&module);
}
