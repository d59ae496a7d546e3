/* test_schema.c - the schema macros: struct layout, field tables, protocol
 * lookups, and that a wrongly typed call does not compile. */
#include "mw_test.h"
#include "test_proto.h"

#include <stdio.h>
#include <string.h>

static void test_schema_field_table_matches_struct(void **state) {
    (void)state;
    const mw_schema_t *s = all_kinds_schema();
    assert_string_equal(s->name, "all_kinds");
    assert_int_equal(s->name_len, 9);
    assert_int_equal(s->tag, 1);
    assert_int_equal(s->size, sizeof(all_kinds_t));
    assert_int_equal(s->nfields, 13);
    assert_int_equal(s->fields[0].offset, offsetof(all_kinds_t, i8));
    assert_int_equal(s->fields[10].kind, MW_FK_CHARS);
    assert_int_equal(s->fields[10].size, 8);
    assert_int_equal(s->fields[10].offset, offsetof(all_kinds_t, sym));
    assert_int_equal(s->fields[11].kind, MW_FK_BYTES);
    assert_int_equal(s->fields[11].size, 4);
    assert_int_equal(s->fields[12].kind, MW_FK_ENUM);
    assert_int_equal(s->fields[12].limit, 3);
    /* 2 tag + 1+2+4+8 + 1+2+4+8 + 8 + 1 + 8 + 4 + 1 */
    assert_int_equal(s->fixed_size, 2 + 15 + 15 + 8 + 1 + 8 + 4 + 1);
    assert_int_equal(all_kinds_FIXED_SIZE, s->fixed_size);
    for (unsigned i = 0; i < s->nfields; i++)
        assert_int_equal(strlen(s->fields[i].name), s->fields[i].name_len);
}

#define PADDED_FIELDS(F) F(U8, small) F(U64, big)
MW_MESSAGE(padded, 9, PADDED_FIELDS)
#define PLAIN_BYTES_FIELDS(F) F(U32, a) F(U32, b) F(BYTES, raw, 8) F(F64, x)
MW_MESSAGE(plain_bytes, 10, PLAIN_BYTES_FIELDS)

static void test_schema_plain_flag_only_when_struct_bytes_are_the_wire_bytes(void **state) {
    (void)state;
    assert_true(ping_schema()->flags & MW_SCHEMA_PLAIN);          /* u64, u64 */
    assert_true(plain_bytes_schema()->flags & MW_SCHEMA_PLAIN);   /* u32, u32, bytes[8], f64 */
    assert_false(all_kinds_schema()->flags & MW_SCHEMA_PLAIN);    /* bool, enum, chars need checks */
    assert_false(heartbeat_schema()->flags & MW_SCHEMA_PLAIN);    /* a bool */
    assert_false(padded_schema()->flags & MW_SCHEMA_PLAIN);       /* 7 bytes of padding after u8 */
    assert_int_equal(padded_schema()->fixed_size, 2 + 9);
}

static void test_protocol_lookup_by_tag_name_and_index(void **state) {
    (void)state;
    const mw_protocol_t *p = &test_protocol;
    assert_int_equal(p->count, 3);
    assert_int_equal(p->max_size, sizeof(test_msg_t));
    assert_true(p->max_size >= sizeof(all_kinds_t));
    assert_int_equal(p->max_fixed_size, all_kinds_FIXED_SIZE);
    assert_string_equal(mw_protocol_by_tag(p, 2)->name, "ping");
    assert_null(mw_protocol_by_tag(p, 0));
    assert_null(mw_protocol_by_tag(p, 99));
    assert_int_equal(mw_protocol_by_name(p, "heartbeat", 9)->tag, 3);
    assert_null(mw_protocol_by_name(p, "heartbea", 8));
    assert_null(mw_protocol_by_name(p, "pingx", 5));
    assert_string_equal(p->at(0)->name, "all_kinds");
    assert_string_equal(p->at(2)->name, "heartbeat");
    assert_null(p->at(3));
}

static void test_schema_of_picks_by_static_type(void **state) {
    (void)state;
    ping_t pg;
    const heartbeat_t *hb = NULL;
    assert_int_equal(MW_SCHEMA_OF(&pg, TEST_MSGS)->tag, ping_TAG);
    assert_int_equal(MW_SCHEMA_OF(hb, TEST_MSGS)->tag, heartbeat_TAG);
}

/* Compiles tests/compile/typed_call.c twice: as written it must compile, and
 * with -DWRONG_TYPE (a ping_t passed to all_kinds_encode, and to
 * MW_SCHEMA_OF a type outside the protocol) it must not. */
static int compile(const char *defs) {
    char cmd[2048];
    snprintf(cmd, sizeof cmd,
             "%s -std=c11 -D_GNU_SOURCE -Wall -Wextra -Werror %s -I%s/core -I%s/serdes -I%s/tests/util "
             "-fsyntax-only %s/tests/compile/typed_call.c 2>&1",
             MW_CC, defs, MW_SRC_ROOT, MW_SRC_ROOT, MW_SRC_ROOT, MW_SRC_ROOT);
    char out[4096];
    return mw_run(cmd, out, sizeof out);
}

static void test_typed_encode_rejects_wrong_struct_at_compile_time(void **state) {
    (void)state;
    assert_int_equal(compile(""), 0);
    assert_int_not_equal(compile("-DWRONG_ENCODE"), 0);
    assert_int_not_equal(compile("-DWRONG_GENERIC"), 0);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_schema_field_table_matches_struct),
        cmocka_unit_test(test_protocol_lookup_by_tag_name_and_index),
        cmocka_unit_test(test_schema_plain_flag_only_when_struct_bytes_are_the_wire_bytes),
        cmocka_unit_test(test_schema_of_picks_by_static_type),
        cmocka_unit_test(test_typed_encode_rejects_wrong_struct_at_compile_time),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
