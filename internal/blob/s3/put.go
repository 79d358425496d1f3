package s3

import (
	"bytes"
	"context"
	"crypto/md5"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"

	"github.com/haul-dev/haul/internal/blob"
)

// maxParts is S3's limit on the parts of one multipart upload.
const maxParts = 10000

// abortTimeout bounds the AbortMultipartUpload sent after a failed upload,
// which runs even when the caller's context has ended.
const abortTimeout = 30 * time.Second

// Put stores the bytes of r under key. Every request body it sends can be
// read again, so the SDK's retryer may resend any of them:
//
//   - A body that is an io.ReaderAt and io.Seeker (an *os.File, a
//     *bytes.Reader) is sent from its current offset without copying: with
//     one PutObject up to 64 MiB, in 16 MiB parts of a multipart upload
//     above.
//   - Any other reader is read into memory up to 1 MiB; a body that ends
//     there goes up with one PutObject. A longer one is spooled to an
//     unlinked temporary file, at most 64 MiB of it: if the body ends
//     within that, one PutObject sends the file; if not, the file's bytes
//     become the first parts of a multipart upload, and the rest of the
//     body follows one 16 MiB part at a time through the same file. Memory
//     stays bounded whatever the body's length.
//
// S3 makes an object visible only when its PutObject or
// CompleteMultipartUpload succeeds, so readers never see part of one; a
// failed multipart upload is aborted. When CompleteMultipartUpload fails (its
// reply lost, and the SDK's retries finding the upload gone or losing their
// replies too), Put compares the object's ETag with the one the parts it
// sent make, and succeeds if they match.
func (s *Store) Put(ctx context.Context, key string, r io.Reader) error {
	if err := blob.ValidateKey(key); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("s3: put %s in %s: %w", key, s.where, err)
	}
	if err := s.put(ctx, key, r); err != nil {
		return fmt.Errorf("s3: put %s in %s: %w", key, s.where, s.explain(err))
	}
	return nil
}

func (s *Store) put(ctx context.Context, key string, r io.Reader) error {
	if ra, size, ok := sized(r); ok {
		if size <= s.singlePutMax {
			return s.putOne(ctx, key, io.NewSectionReader(ra, 0, size), size)
		}
		return s.putParts(ctx, key, func(yield func(*io.SectionReader) error) error {
			for off := int64(0); off < size; off += s.partSize {
				if err := yield(io.NewSectionReader(ra, off, min(s.partSize, size-off))); err != nil {
					return err
				}
			}
			return nil
		})
	}

	// Unknown size: small bodies stay in memory.
	head := make([]byte, s.memBuffer)
	n, err := io.ReadFull(r, head)
	switch {
	case err == io.EOF || err == io.ErrUnexpectedEOF:
		return s.putOne(ctx, key, io.NewSectionReader(bytes.NewReader(head[:n]), 0, int64(n)), int64(n))
	case err != nil:
		return fmt.Errorf("read body: %w", err)
	}

	// Spool up to singlePutMax bytes, then look for one more.
	f, err := spoolFile()
	if err != nil {
		return err
	}
	defer f.Close()
	if _, err := f.Write(head); err != nil {
		return fmt.Errorf("spool body: %w", err)
	}
	head = nil
	if _, err := io.CopyN(f, r, s.singlePutMax-int64(n)); err != nil && err != io.EOF {
		return fmt.Errorf("spool body: %w", err)
	}
	spooled, err := f.Seek(0, io.SeekCurrent)
	if err != nil {
		return fmt.Errorf("spool body: %w", err)
	}
	var one [1]byte
	m, err := io.ReadFull(r, one[:])
	if err != nil && err != io.EOF {
		return fmt.Errorf("read body: %w", err)
	}
	if m == 0 {
		return s.putOne(ctx, key, io.NewSectionReader(f, 0, spooled), spooled)
	}

	rest := io.MultiReader(bytes.NewReader(one[:m]), r)
	return s.putParts(ctx, key, func(yield func(*io.SectionReader) error) error {
		// First the spooled bytes, part by part, then the rest of the body
		// through the same file, one part at a time.
		for off := int64(0); off < spooled; off += s.partSize {
			if err := yield(io.NewSectionReader(f, off, min(s.partSize, spooled-off))); err != nil {
				return err
			}
		}
		for {
			if err := f.Truncate(0); err != nil {
				return fmt.Errorf("spool body: %w", err)
			}
			if _, err := f.Seek(0, io.SeekStart); err != nil {
				return fmt.Errorf("spool body: %w", err)
			}
			n, err := io.CopyN(f, rest, s.partSize)
			if err != nil && err != io.EOF {
				return fmt.Errorf("read body: %w", err)
			}
			if n > 0 {
				if err := yield(io.NewSectionReader(f, 0, n)); err != nil {
					return err
				}
			}
			if n < s.partSize {
				return nil
			}
		}
	})
}

// sized reports whether r can be sent as is: it can be read at any offset
// and its length is known. The returned ReaderAt starts at r's current
// offset.
func sized(r io.Reader) (io.ReaderAt, int64, bool) {
	ra, ok1 := r.(io.ReaderAt)
	sk, ok2 := r.(io.Seeker)
	if !ok1 || !ok2 {
		return nil, 0, false
	}
	cur, err := sk.Seek(0, io.SeekCurrent)
	if err != nil {
		return nil, 0, false // a pipe or socket
	}
	end, err := sk.Seek(0, io.SeekEnd)
	if err != nil {
		return nil, 0, false
	}
	if _, err := sk.Seek(cur, io.SeekStart); err != nil {
		return nil, 0, false
	}
	if end < cur {
		end = cur
	}
	// Leave r where a plain read of it would: at its end.
	_, _ = sk.Seek(end, io.SeekStart)
	return io.NewSectionReader(ra, cur, end-cur), end - cur, true
}

// spoolFile creates a temporary file and unlinks it at once, so that nothing
// is left behind whatever happens to the process.
func spoolFile() (*os.File, error) {
	f, err := os.CreateTemp("", "haul-s3-put-*")
	if err != nil {
		return nil, fmt.Errorf("spool body: %w", err)
	}
	if err := os.Remove(f.Name()); err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("spool body: %w", err)
	}
	return f, nil
}

func (s *Store) putOne(ctx context.Context, key string, body *io.SectionReader, size int64) error {
	_, err := s.client.PutObject(ctx, &s3.PutObjectInput{
		Bucket:        aws.String(s.bucket),
		Key:           aws.String(s.objectKey(key)),
		Body:          body,
		ContentLength: aws.Int64(size),
	})
	return err
}

// putParts runs a multipart upload of the parts that each yields, in order,
// one at a time, and aborts the upload if any step fails.
func (s *Store) putParts(ctx context.Context, key string, each func(yield func(*io.SectionReader) error) error) (err error) {
	objKey := s.objectKey(key)
	created, err := s.client.CreateMultipartUpload(ctx, &s3.CreateMultipartUploadInput{
		Bucket: aws.String(s.bucket),
		Key:    aws.String(objKey),
	})
	if err != nil {
		return fmt.Errorf("start multipart upload: %w", err)
	}
	id := created.UploadId
	defer func() {
		if err == nil {
			return
		}
		actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), abortTimeout)
		defer cancel()
		if _, aerr := s.client.AbortMultipartUpload(actx, &s3.AbortMultipartUploadInput{
			Bucket:   aws.String(s.bucket),
			Key:      aws.String(objKey),
			UploadId: id,
		}); aerr != nil {
			err = errors.Join(err, fmt.Errorf("abort multipart upload: %w", aerr))
		}
	}()

	var parts []types.CompletedPart
	err = each(func(body *io.SectionReader) error {
		num := int32(len(parts) + 1)
		if num > maxParts {
			return fmt.Errorf("body longer than %d parts of %d bytes", maxParts, s.partSize)
		}
		out, err := s.client.UploadPart(ctx, &s3.UploadPartInput{
			Bucket:        aws.String(s.bucket),
			Key:           aws.String(objKey),
			UploadId:      id,
			PartNumber:    aws.Int32(num),
			Body:          body,
			ContentLength: aws.Int64(body.Size()),
		})
		if err != nil {
			return fmt.Errorf("upload part %d: %w", num, err)
		}
		parts = append(parts, types.CompletedPart{
			PartNumber:        aws.Int32(num),
			ETag:              out.ETag,
			ChecksumCRC32:     out.ChecksumCRC32,
			ChecksumCRC32C:    out.ChecksumCRC32C,
			ChecksumCRC64NVME: out.ChecksumCRC64NVME,
			ChecksumSHA1:      out.ChecksumSHA1,
			ChecksumSHA256:    out.ChecksumSHA256,
		})
		return nil
	})
	if err != nil {
		return err
	}
	if _, err := s.client.CompleteMultipartUpload(ctx, &s3.CompleteMultipartUploadInput{
		Bucket:          aws.String(s.bucket),
		Key:             aws.String(objKey),
		UploadId:        id,
		MultipartUpload: &types.CompletedMultipartUpload{Parts: parts},
	}); err != nil {
		if s.completed(ctx, objKey, parts) {
			// An attempt completed the upload, but its reply was lost: the
			// SDK's retries found the upload gone (NoSuchUpload) or lost
			// their replies too.
			return nil
		}
		return fmt.Errorf("complete multipart upload: %w", err)
	}
	return nil
}

// completed reports whether the object at objKey is the one that completing
// an upload of parts makes: its ETag is the MD5 of the parts' MD5s followed
// by "-" and the number of parts. Parts whose ETags are not plain MD5s
// (objects encrypted with KMS keys) cannot be checked, and give false.
func (s *Store) completed(ctx context.Context, objKey string, parts []types.CompletedPart) bool {
	h := md5.New()
	for _, p := range parts {
		sum, err := hex.DecodeString(strings.Trim(aws.ToString(p.ETag), `"`))
		if err != nil || len(sum) != md5.Size {
			return false
		}
		h.Write(sum)
	}
	want := fmt.Sprintf("%x-%d", h.Sum(nil), len(parts))
	head, err := s.client.HeadObject(ctx, &s3.HeadObjectInput{
		Bucket: aws.String(s.bucket),
		Key:    aws.String(objKey),
	})
	return err == nil && strings.Trim(aws.ToString(head.ETag), `"`) == want
}
