// Decoding JPEG (libjpeg-turbo) and PNG (libpng) into 8-bit RGB for PruneKit's image folders.
// libjpeg reports errors by calling error_exit, which must not return: these functions catch
// it with setjmp/longjmp here in C, where that is safe, and return NULL with the message.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <setjmp.h>
#include <jpeglib.h>
#include <jerror.h>
#include <png.h>

struct prunekit_jpeg_error {
    struct jpeg_error_mgr pub;
    jmp_buf jump;
    int truncated;
    char message[JMSG_LENGTH_MAX];
};

static void prunekit_jpeg_error_exit(j_common_ptr cinfo) {
    struct prunekit_jpeg_error *e = (struct prunekit_jpeg_error *)cinfo->err;
    (*cinfo->err->format_message)(cinfo, e->message);
    longjmp(e->jump, 1);
}

// Warnings are not printed; a premature end of the data (a truncated file) is remembered.
static void prunekit_jpeg_emit_message(j_common_ptr cinfo, int level) {
    struct prunekit_jpeg_error *e = (struct prunekit_jpeg_error *)cinfo->err;
    if (level < 0 && cinfo->err->msg_code == JWRN_JPEG_EOF) {
        e->truncated = 1;
        (*cinfo->err->format_message)(cinfo, e->message);
    }
}

/// Decodes a JPEG into RGB (3 bytes per pixel, rows top to bottom; grey-scale is
/// replicated into R, G and B). With header_only, only reads the size and returns a
/// non-NULL dummy pointer that must not be freed. Returns a buffer to free() or NULL,
/// with the reason in message.
static inline unsigned char *prunekit_decode_jpeg(const unsigned char *data, unsigned long size, int header_only,
                                                  int *width, int *height, char *message, int message_size) {
    struct jpeg_decompress_struct cinfo;
    struct prunekit_jpeg_error err;
    unsigned char *volatile buffer = NULL;
    memset(&err, 0, sizeof err);
    cinfo.err = jpeg_std_error(&err.pub);
    err.pub.error_exit = prunekit_jpeg_error_exit;
    err.pub.emit_message = prunekit_jpeg_emit_message;
    if (setjmp(err.jump)) {
        snprintf(message, message_size, "%s", err.message);
        jpeg_destroy_decompress(&cinfo);
        free(buffer);
        return NULL;
    }
    jpeg_create_decompress(&cinfo);
    jpeg_mem_src(&cinfo, data, size);
    jpeg_read_header(&cinfo, TRUE);
    *width = (int)cinfo.image_width;
    *height = (int)cinfo.image_height;
    if (header_only) {
        jpeg_destroy_decompress(&cinfo);
        return (unsigned char *)data;
    }
    cinfo.out_color_space = JCS_RGB;
    cinfo.dct_method = JDCT_ISLOW;
    jpeg_start_decompress(&cinfo);
    size_t stride = (size_t)cinfo.output_width * 3;
    buffer = (unsigned char *)malloc(stride * cinfo.output_height);
    if (!buffer) { snprintf(message, message_size, "out of memory"); jpeg_destroy_decompress(&cinfo); return NULL; }
    while (cinfo.output_scanline < cinfo.output_height) {
        JSAMPROW row = buffer + stride * cinfo.output_scanline;
        jpeg_read_scanlines(&cinfo, &row, 1);
    }
    jpeg_finish_decompress(&cinfo);
    jpeg_destroy_decompress(&cinfo);
    if (err.truncated) {
        snprintf(message, message_size, "%s", err.message);
        free(buffer);
        return NULL;
    }
    return buffer;
}

/// Decodes a PNG into RGB with libpng's simplified API (grey-scale and palette images
/// are converted; an alpha channel is composited onto black). Same contract as
/// prunekit_decode_jpeg.
static inline unsigned char *prunekit_decode_png(const unsigned char *data, unsigned long size, int header_only,
                                                 int *width, int *height, char *message, int message_size) {
    png_image image;
    memset(&image, 0, sizeof image);
    image.version = PNG_IMAGE_VERSION;
    if (!png_image_begin_read_from_memory(&image, data, size)) {
        snprintf(message, message_size, "%s", image.message);
        png_image_free(&image);
        return NULL;
    }
    *width = (int)image.width;
    *height = (int)image.height;
    if (header_only) { png_image_free(&image); return (unsigned char *)data; }
    image.format = PNG_FORMAT_RGB;
    unsigned char *buffer = (unsigned char *)malloc(PNG_IMAGE_SIZE(image));
    if (!buffer) { snprintf(message, message_size, "out of memory"); png_image_free(&image); return NULL; }
    if (!png_image_finish_read(&image, NULL, buffer, 0, NULL)) {
        snprintf(message, message_size, "%s", image.message);
        free(buffer);
        png_image_free(&image);
        return NULL;
    }
    return buffer;
}

/// Encodes 8-bit RGB (channels 3) or grey (channels 1) pixels as a PNG file (for tests
/// and benchmarks that generate image folders). Returns 0 on failure.
static inline int prunekit_write_png(const char *path, const unsigned char *pixels, int width, int height, int channels) {
    png_image image;
    memset(&image, 0, sizeof image);
    image.version = PNG_IMAGE_VERSION;
    image.width = (png_uint_32)width;
    image.height = (png_uint_32)height;
    image.format = channels == 1 ? PNG_FORMAT_GRAY : PNG_FORMAT_RGB;
    return png_image_write_to_file(&image, path, 0, pixels, 0, NULL);
}

/// Encodes 8-bit RGB (channels 3) or grey (channels 1) pixels as a baseline JPEG of the
/// given quality. Returns 0 on failure.
static inline int prunekit_write_jpeg(const char *path, const unsigned char *pixels, int width, int height,
                                      int channels, int quality) {
    struct jpeg_compress_struct cinfo;
    struct prunekit_jpeg_error err;
    FILE *volatile file = NULL;
    memset(&err, 0, sizeof err);
    cinfo.err = jpeg_std_error(&err.pub);
    err.pub.error_exit = prunekit_jpeg_error_exit;
    if (setjmp(err.jump)) {
        jpeg_destroy_compress(&cinfo);
        if (file) fclose(file);
        return 0;
    }
    jpeg_create_compress(&cinfo);
    file = fopen(path, "wb");
    if (!file) { jpeg_destroy_compress(&cinfo); return 0; }
    jpeg_stdio_dest(&cinfo, file);
    cinfo.image_width = (JDIMENSION)width;
    cinfo.image_height = (JDIMENSION)height;
    cinfo.input_components = channels;
    cinfo.in_color_space = channels == 1 ? JCS_GRAYSCALE : JCS_RGB;
    jpeg_set_defaults(&cinfo);
    jpeg_set_quality(&cinfo, quality, TRUE);
    jpeg_start_compress(&cinfo, TRUE);
    while (cinfo.next_scanline < cinfo.image_height) {
        JSAMPROW row = (JSAMPROW)(pixels + (size_t)cinfo.next_scanline * width * channels);
        jpeg_write_scanlines(&cinfo, &row, 1);
    }
    jpeg_finish_compress(&cinfo);
    jpeg_destroy_compress(&cinfo);
    fclose(file);
    return 1;
}
