/* funcs.h: registration of the module-level utilities (funcs.c: json_get*,
 * url_*, match, http_var, http_parse_multipart, digests, base64, millis,
 * random_*, crc32) and of the Rpc/RpcReq types (rpc.c), SPEC 1.9-1.10.
 * module.c calls both from its Py_mod_exec slot. */
#ifndef CM_FUNCS_H
#define CM_FUNCS_H

#include "ext.h"

/* Add the functions of funcs.c to `module`.  If `all` is not NULL (a
 * list), append their names to it.  Returns 0, or -1 with an exception. */
int funcs_exec(PyObject *module, PyObject *all);

/* Create the heap types Rpc and RpcReq bound to `module`, add them as
 * module attributes and, if `all` is not NULL, append their names to it.
 * Returns 0, or -1 with an exception set. */
int rpc_exec(PyObject *module, PyObject *all);

/* Append the str `name` to the list `all`.  Returns 0, or -1. */
int funcs_list_name(PyObject *all, const char *name);

#endif /* CM_FUNCS_H */
