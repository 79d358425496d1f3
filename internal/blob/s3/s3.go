// Package s3 is the blob.Store driver for Amazon S3 and S3-compatible
// servers (MinIO, Ceph RGW, R2 and the like), on the AWS SDK for Go v2.
//
// Importing the package registers the "s3" URL scheme with blob.Open:
//
//	s3://bucket                     objects at the top of bucket
//	s3://bucket/some/prefix         objects under some/prefix/ in bucket
//	s3://bucket?region=eu-west-1    a region other than the AWS config's
//	s3://bucket?endpoint=http://127.0.0.1:9000&path_style=true
//	                                an S3-compatible server
//
// Query parameters: region (default us-east-1 when endpoint is set,
// otherwise the AWS configuration's region), endpoint (a base URL, http or
// https) and path_style (true or false; path-style addressing,
// http://host/bucket/key, which most S3-compatible servers need). Any other
// parameter, and credentials written into the URL, are errors.
//
// URLs never carry credentials: blob.Open takes them from the standard AWS
// chain (the AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY/AWS_SESSION_TOKEN
// environment, the shared config and credentials files with AWS_PROFILE,
// web identity tokens, the EC2/ECS instance role). A caller that holds
// credentials of its own (a team's bucket that an admin configured) calls
// ParseURL and New with Options.AccessKeyID and Options.SecretAccessKey.
// Errors never quote the secret key.
//
// The bucket must exist: New checks it once with HeadBucket and fails with
// an error naming the bucket when it is missing or the credentials cannot
// reach it. CreateBucket creates it, for tests and admin tools.
package s3

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go"

	"github.com/haul-dev/haul/internal/blob"
)

// Scheme is the URL scheme that the package registers with blob.Register.
const Scheme = "s3"

// DefaultRegion is the region used with an explicit endpoint when none is
// given: S3-compatible servers accept any region in the signature, and most
// expect this one.
const DefaultRegion = "us-east-1"

// openTimeout bounds the configuration load and bucket check of a store
// opened through blob.Open, which has no context of its own.
const openTimeout = 30 * time.Second

func init() {
	blob.Register(Scheme, func(u *url.URL) (blob.Store, error) {
		o, err := optionsFromURL(u)
		if err != nil {
			return nil, err
		}
		ctx, cancel := context.WithTimeout(context.Background(), openTimeout)
		defer cancel()
		return New(ctx, o)
	})
}

// Options says which bucket a Store uses and how it reaches it.
type Options struct {
	// Bucket is the bucket's name. Required.
	Bucket string
	// Prefix is the key prefix under which the store keeps its objects,
	// without leading or trailing '/' ("" for the top of the bucket); the
	// store's key "a/b" is the object Prefix+"/a/b".
	Prefix string
	// Region is the bucket's region. Empty means DefaultRegion when Endpoint
	// is set, and the AWS configuration's region (AWS_REGION, the shared
	// config's profile) otherwise.
	Region string
	// Endpoint is the base URL of an S3-compatible server, such as
	// http://127.0.0.1:9000. Empty means AWS S3.
	Endpoint string
	// PathStyle sends requests to Endpoint/bucket/key instead of to
	// bucket.endpoint/key.
	PathStyle bool
	// AccessKeyID, SecretAccessKey and SessionToken are static credentials,
	// used when AccessKeyID is not empty. Otherwise credentials come from
	// the standard AWS chain.
	AccessKeyID, SecretAccessKey, SessionToken string
	// HTTPClient, when not nil, sends the requests instead of the SDK's
	// default client.
	HTTPClient *http.Client
	// SkipBucketCheck makes New return without checking that the bucket
	// exists, for admin tools and tests that create it with CreateBucket.
	SkipBucketCheck bool
}

// String describes the options without credentials (and without the access
// key id's presence being mistaken for the secret).
func (o Options) String() string {
	u := url.URL{Scheme: Scheme, Host: o.Bucket, Path: "/" + o.Prefix}
	q := url.Values{}
	if o.Region != "" {
		q.Set("region", o.Region)
	}
	if o.Endpoint != "" {
		q.Set("endpoint", o.Endpoint)
	}
	if o.PathStyle {
		q.Set("path_style", "true")
	}
	u.RawQuery = q.Encode()
	return u.String()
}

// ParseURL parses an s3:// URL (see the package documentation) into
// Options without credentials; the caller may add them before calling New.
func ParseURL(raw string) (Options, error) {
	u, err := url.Parse(raw)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // url.Error quotes the whole URL
		}
		return Options{}, fmt.Errorf("s3: parse store URL: %w", err)
	}
	return optionsFromURL(u)
}

func optionsFromURL(u *url.URL) (Options, error) {
	if !strings.EqualFold(u.Scheme, Scheme) {
		return Options{}, fmt.Errorf("s3: store URL %q: scheme %q, want s3://bucket/prefix", u.Redacted(), u.Scheme)
	}
	if u.User != nil {
		return Options{}, fmt.Errorf("s3: store URL %q: credentials do not go in the URL; use the AWS environment or configuration", u.Redacted())
	}
	if u.Opaque != "" || u.Host == "" {
		return Options{}, fmt.Errorf("s3: store URL %q: want s3://bucket/optional/prefix", u.Redacted())
	}
	if u.Fragment != "" {
		return Options{}, fmt.Errorf("s3: store URL %q: unexpected fragment", u.Redacted())
	}
	o := Options{Bucket: u.Host, Prefix: strings.Trim(u.Path, "/")}
	for k, vs := range u.Query() {
		if len(vs) != 1 {
			return Options{}, fmt.Errorf("s3: store URL %q: parameter %s given %d times", u.Redacted(), k, len(vs))
		}
		v := vs[0]
		switch k {
		case "region":
			o.Region = v
		case "endpoint":
			o.Endpoint = v
		case "path_style":
			b, err := strconv.ParseBool(v)
			if err != nil {
				return Options{}, fmt.Errorf("s3: store URL %q: path_style=%q: want true or false", u.Redacted(), v)
			}
			o.PathStyle = b
		default:
			return Options{}, fmt.Errorf("s3: store URL %q: unknown parameter %q (known: endpoint, path_style, region)", u.Redacted(), k)
		}
	}
	if err := o.validate(); err != nil {
		return Options{}, err
	}
	return o, nil
}

func (o Options) validate() error {
	if o.Bucket == "" {
		return errors.New("s3: no bucket")
	}
	if strings.ContainsAny(o.Bucket, "/ ") {
		return fmt.Errorf("s3: bucket name %q contains '/' or a space", o.Bucket)
	}
	if o.Prefix != "" {
		if err := blob.ValidateKey(o.Prefix); err != nil {
			return fmt.Errorf("s3: bucket %s: bad prefix %q: %w", o.Bucket, o.Prefix, err)
		}
	}
	if o.Endpoint != "" {
		e, err := url.Parse(o.Endpoint)
		if err != nil || (e.Scheme != "http" && e.Scheme != "https") || e.Host == "" || e.User != nil {
			return fmt.Errorf("s3: endpoint %q: want a base URL such as http://127.0.0.1:9000 or https://s3.example.com", redactEndpoint(o.Endpoint))
		}
	}
	if o.AccessKeyID == "" && (o.SecretAccessKey != "" || o.SessionToken != "") {
		return errors.New("s3: a secret access key or session token was given without an access key id")
	}
	if o.AccessKeyID != "" && o.SecretAccessKey == "" {
		return fmt.Errorf("s3: access key id %s was given without a secret access key", o.AccessKeyID)
	}
	return nil
}

func redactEndpoint(s string) string {
	if e, err := url.Parse(s); err == nil {
		return e.Redacted()
	}
	return "(unparsable)"
}

// Store is a blob.Store in an S3 bucket, under an optional key prefix.
// Its methods are safe for concurrent use.
type Store struct {
	client *s3.Client
	bucket string
	prefix string // "" or ends with '/'
	where  string // the bucket and endpoint, for error messages
	keyID  string // the static access key id, for error messages

	// singlePutMax is the largest body sent with one PutObject; larger
	// ones go up in parts of partSize bytes.
	singlePutMax int64
	partSize     int64
	// memBuffer is how much of a body of unknown size Put holds in memory
	// before it spools the body to a temporary file.
	memBuffer int
}

var _ blob.Store = (*Store)(nil)

// New returns a Store for the bucket that o names. It loads the AWS
// configuration (region and, without static credentials, the credential
// chain) and, unless o.SkipBucketCheck, checks with HeadBucket that the
// bucket exists and can be reached with the credentials.
func New(ctx context.Context, o Options) (*Store, error) {
	o.Prefix = strings.Trim(o.Prefix, "/")
	if err := o.validate(); err != nil {
		return nil, err
	}
	var loads []func(*config.LoadOptions) error
	region := o.Region
	if region == "" && o.Endpoint != "" {
		region = DefaultRegion
	}
	if region != "" {
		loads = append(loads, config.WithRegion(region))
	}
	if o.AccessKeyID != "" {
		loads = append(loads, config.WithCredentialsProvider(
			credentials.NewStaticCredentialsProvider(o.AccessKeyID, o.SecretAccessKey, o.SessionToken)))
	}
	if o.HTTPClient != nil {
		loads = append(loads, config.WithHTTPClient(o.HTTPClient))
	}
	cfg, err := config.LoadDefaultConfig(ctx, loads...)
	if err != nil {
		return nil, fmt.Errorf("s3: bucket %s: load AWS configuration: %w", o.Bucket, err)
	}
	if cfg.Region == "" {
		return nil, fmt.Errorf("s3: bucket %s: no region: add ?region= to the URL or set AWS_REGION", o.Bucket)
	}
	client := s3.NewFromConfig(cfg, func(so *s3.Options) {
		if o.Endpoint != "" {
			so.BaseEndpoint = aws.String(o.Endpoint)
		}
		so.UsePathStyle = o.PathStyle
	})
	s := &Store{
		client:       client,
		bucket:       o.Bucket,
		where:        "bucket " + o.Bucket,
		keyID:        o.AccessKeyID,
		singlePutMax: 64 << 20,
		partSize:     16 << 20,
		memBuffer:    1 << 20,
	}
	if o.Prefix != "" {
		s.prefix = o.Prefix + "/"
	}
	if o.Endpoint != "" {
		s.where += " at " + redactEndpoint(o.Endpoint)
	} else {
		s.where += " (region " + cfg.Region + ")"
	}
	if !o.SkipBucketCheck {
		if err := s.CheckBucket(ctx); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// Client returns the SDK client, for callers that need an S3 call the
// Store does not make.
func (s *Store) Client() *s3.Client { return s.client }

// Bucket returns the bucket's name.
func (s *Store) Bucket() string { return s.bucket }

// Prefix returns the key prefix, "" or ending with '/'.
func (s *Store) Prefix() string { return s.prefix }

// CheckBucket checks with HeadBucket that the bucket exists and that the
// credentials reach it; the error names the bucket and says which of the
// two failed when the server tells.
func (s *Store) CheckBucket(ctx context.Context) error {
	_, err := s.client.HeadBucket(ctx, &s3.HeadBucketInput{Bucket: aws.String(s.bucket)})
	if err == nil {
		return nil
	}
	switch status := httpStatus(err); {
	case status == http.StatusNotFound || isCode(err, "NoSuchBucket", "NotFound"):
		return fmt.Errorf("s3: %s does not exist (create it, or fix the bucket name in the store URL): %w", s.where, err)
	case status == http.StatusForbidden || status == http.StatusUnauthorized:
		return fmt.Errorf("s3: %s: access denied; check the credentials%s and the bucket's policy: %w", s.where, s.keyHint(), err)
	case status == http.StatusMovedPermanently:
		return fmt.Errorf("s3: %s is in another region; set ?region= in the store URL: %w", s.where, err)
	default:
		return fmt.Errorf("s3: check %s: %w", s.where, err)
	}
}

func (s *Store) keyHint() string {
	if s.keyID == "" {
		return " (from the AWS credential chain)"
	}
	return " (access key id " + s.keyID + ")"
}

// CreateBucket creates the bucket; a bucket that already exists and is the
// caller's is not an error.
func (s *Store) CreateBucket(ctx context.Context) error {
	in := &s3.CreateBucketInput{Bucket: aws.String(s.bucket)}
	if r := s.client.Options().Region; r != "" && r != DefaultRegion {
		in.CreateBucketConfiguration = &types.CreateBucketConfiguration{LocationConstraint: types.BucketLocationConstraint(r)}
	}
	_, err := s.client.CreateBucket(ctx, in)
	var owned *types.BucketAlreadyOwnedByYou
	if err != nil && !errors.As(err, &owned) {
		return fmt.Errorf("s3: create %s: %w", s.where, s.explain(err))
	}
	return nil
}

func (s *Store) objectKey(key string) string { return s.prefix + key }

// Get opens the object with GetObject.
func (s *Store) Get(ctx context.Context, key string) (io.ReadCloser, error) {
	if err := blob.ValidateKey(key); err != nil {
		return nil, err
	}
	out, err := s.client.GetObject(ctx, &s3.GetObjectInput{
		Bucket: aws.String(s.bucket),
		Key:    aws.String(s.objectKey(key)),
	})
	if err != nil {
		return nil, s.opError("get", key, err)
	}
	return out.Body, nil
}

// GetRange opens part of the object with a ranged GetObject (see
// blob.Store.GetRange). A zero length, and an offset at or past the end (the
// server answers 416), give an empty reader once the object is known to
// exist.
func (s *Store) GetRange(ctx context.Context, key string, offset, length int64) (io.ReadCloser, error) {
	if err := blob.CheckRange(key, offset); err != nil {
		return nil, err
	}
	if length > math.MaxInt64-offset {
		length = -1 // past any object's end
	}
	if length == 0 {
		if _, err := s.client.HeadObject(ctx, &s3.HeadObjectInput{
			Bucket: aws.String(s.bucket),
			Key:    aws.String(s.objectKey(key)),
		}); err != nil {
			return nil, s.opError("get", key, err)
		}
		return io.NopCloser(strings.NewReader("")), nil
	}
	rng := fmt.Sprintf("bytes=%d-", offset)
	if length > 0 {
		rng += strconv.FormatInt(offset+length-1, 10)
	}
	out, err := s.client.GetObject(ctx, &s3.GetObjectInput{
		Bucket: aws.String(s.bucket),
		Key:    aws.String(s.objectKey(key)),
		Range:  aws.String(rng),
	})
	if err != nil {
		if httpStatus(err) == http.StatusRequestedRangeNotSatisfiable || isCode(err, "InvalidRange") {
			// The object exists (a missing one is a 404) but ends before
			// offset.
			return io.NopCloser(strings.NewReader("")), nil
		}
		return nil, s.opError("get", key, err)
	}
	if length > 0 {
		// A server that ignores Range sends the whole object; never give
		// the caller more than it asked for.
		if out.ContentRange == nil || *out.ContentRange == "" {
			return rangeBody{io.LimitReader(skip(out.Body, offset), length), out.Body}, nil
		}
		return rangeBody{io.LimitReader(out.Body, length), out.Body}, nil
	}
	if out.ContentRange == nil || *out.ContentRange == "" {
		return rangeBody{skip(out.Body, offset), out.Body}, nil
	}
	return out.Body, nil
}

// skip returns r after discarding its first n bytes.
func skip(r io.Reader, n int64) io.Reader {
	if n == 0 {
		return r
	}
	return &skipReader{r: r, n: n}
}

type skipReader struct {
	r io.Reader
	n int64
}

func (s *skipReader) Read(p []byte) (int, error) {
	if s.n > 0 {
		if _, err := io.CopyN(io.Discard, s.r, s.n); err != nil {
			if err == io.EOF {
				s.n = 0
				return 0, io.EOF
			}
			return 0, err
		}
		s.n = 0
	}
	return s.r.Read(p)
}

type rangeBody struct {
	io.Reader
	c io.Closer
}

func (r rangeBody) Close() error { return r.c.Close() }

// List pages through ListObjectsV2 and returns the keys, relative to the
// store's prefix, that start with prefix, sorted.
func (s *Store) List(ctx context.Context, prefix string) ([]string, error) {
	if err := blob.ValidatePrefix(prefix); err != nil {
		return nil, err
	}
	p := s3.NewListObjectsV2Paginator(s.client, &s3.ListObjectsV2Input{
		Bucket: aws.String(s.bucket),
		Prefix: aws.String(s.objectKey(prefix)),
	})
	var keys []string
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return nil, fmt.Errorf("s3: list %q in %s: %w", prefix, s.where, s.explain(err))
		}
		for _, obj := range page.Contents {
			k, ok := strings.CutPrefix(aws.ToString(obj.Key), s.prefix)
			if ok && k != "" {
				keys = append(keys, k)
			}
		}
	}
	slices.Sort(keys)
	return keys, nil
}

// Delete removes the object with DeleteObject; a missing object is not an
// error.
func (s *Store) Delete(ctx context.Context, key string) error {
	if err := blob.ValidateKey(key); err != nil {
		return err
	}
	_, err := s.client.DeleteObject(ctx, &s3.DeleteObjectInput{
		Bucket: aws.String(s.bucket),
		Key:    aws.String(s.objectKey(key)),
	})
	if err != nil && !isNotFound(err) {
		return fmt.Errorf("s3: delete %s in %s: %w", key, s.where, s.explain(err))
	}
	return nil
}

// opError wraps an error of an operation on key, mapping a missing object
// to blob.ErrNotFound.
func (s *Store) opError(op, key string, err error) error {
	if isNotFound(err) && !isCode(err, "NoSuchBucket") {
		return fmt.Errorf("s3: %s %s in %s: %w", op, key, s.where, blob.ErrNotFound)
	}
	return fmt.Errorf("s3: %s %s in %s: %w", op, key, s.where, s.explain(err))
}

// explain adds a hint to errors whose cause the caller can fix.
func (s *Store) explain(err error) error {
	switch {
	case isCode(err, "InvalidAccessKeyId", "SignatureDoesNotMatch", "InvalidToken", "ExpiredToken", "AccessDenied"):
		return fmt.Errorf("access denied; check the credentials%s: %w", s.keyHint(), err)
	case isCode(err, "NoSuchBucket"):
		return fmt.Errorf("the bucket does not exist: %w", err)
	}
	return err
}

func isNotFound(err error) bool {
	var nsk *types.NoSuchKey
	var nf *types.NotFound
	return errors.As(err, &nsk) || errors.As(err, &nf) || isCode(err, "NoSuchKey", "NotFound") ||
		(httpStatus(err) == http.StatusNotFound && !isCode(err, "NoSuchBucket"))
}

func isCode(err error, codes ...string) bool {
	var ae smithy.APIError
	if !errors.As(err, &ae) {
		return false
	}
	return slices.Contains(codes, ae.ErrorCode())
}

func httpStatus(err error) int {
	var re *awshttp.ResponseError
	if errors.As(err, &re) {
		return re.HTTPStatusCode()
	}
	return 0
}
