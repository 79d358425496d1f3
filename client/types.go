// Aliases of the generated API types, so that programs outside the haul
// module can name them; TestTypesCoverProto keeps them in step with
// proto/haul/api/v1.

package client

import (
	apiv1 "github.com/haul-dev/haul/internal/gen/haul/api/v1"
	"github.com/haul-dev/haul/internal/gen/haul/api/v1/apiv1connect"
)

// The generated Connect clients.
type (
	JobServiceClient   = apiv1connect.JobServiceClient
	AdminServiceClient = apiv1connect.AdminServiceClient
)

// The API's messages and enums (proto/haul/api/v1; docs/api.md).
type (
	TaskSort                     = apiv1.TaskSort
	LogStream                    = apiv1.LogStream
	RetryJobRequest              = apiv1.RetryJobRequest
	RetryJobResponse             = apiv1.RetryJobResponse
	RerunJobRequest              = apiv1.RerunJobRequest
	ListWorkersRequest           = apiv1.ListWorkersRequest
	Worker                       = apiv1.Worker
	ListWorkersResponse          = apiv1.ListWorkersResponse
	GetWorkerRequest             = apiv1.GetWorkerRequest
	WorkerAttempt                = apiv1.WorkerAttempt
	GetWorkerResponse            = apiv1.GetWorkerResponse
	WhoAmIRequest                = apiv1.WhoAmIRequest
	WhoAmIResponse               = apiv1.WhoAmIResponse
	GetJobGraphRequest           = apiv1.GetJobGraphRequest
	TaskGroup                    = apiv1.TaskGroup
	GetJobGraphResponse          = apiv1.GetJobGraphResponse
	WatchJobRequest              = apiv1.WatchJobRequest
	WatchJobResponse             = apiv1.WatchJobResponse
	WhyRequest                   = apiv1.WhyRequest
	Blocker                      = apiv1.Blocker
	WhyResponse                  = apiv1.WhyResponse
	SubmitJobRequest             = apiv1.SubmitJobRequest
	AddTasksRequest              = apiv1.AddTasksRequest
	AddTasksResponse             = apiv1.AddTasksResponse
	SubmitJobResponse            = apiv1.SubmitJobResponse
	Tier                         = apiv1.Tier
	TaskCounts                   = apiv1.TaskCounts
	Job                          = apiv1.Job
	Notification                 = apiv1.Notification
	GetJobRequest                = apiv1.GetJobRequest
	GetJobResponse               = apiv1.GetJobResponse
	ListJobsRequest              = apiv1.ListJobsRequest
	ListJobsResponse             = apiv1.ListJobsResponse
	CancelJobRequest             = apiv1.CancelJobRequest
	CancelJobResponse            = apiv1.CancelJobResponse
	Attempt                      = apiv1.Attempt
	GPUUsage                     = apiv1.GPUUsage
	Usage                        = apiv1.Usage
	Task                         = apiv1.Task
	ListTasksRequest             = apiv1.ListTasksRequest
	ListTasksResponse            = apiv1.ListTasksResponse
	GetTaskRequest               = apiv1.GetTaskRequest
	GetTaskResponse              = apiv1.GetTaskResponse
	CancelTaskRequest            = apiv1.CancelTaskRequest
	CancelTaskResponse           = apiv1.CancelTaskResponse
	GetLogsRequest               = apiv1.GetLogsRequest
	GetLogsResponse              = apiv1.GetLogsResponse
	LogChunk                     = apiv1.LogChunk
	GetWebhookKeyRequest         = apiv1.GetWebhookKeyRequest
	GetWebhookKeyResponse        = apiv1.GetWebhookKeyResponse
	LogDestination               = apiv1.LogDestination
	SetLogDestinationRequest     = apiv1.SetLogDestinationRequest
	SetLogDestinationResponse    = apiv1.SetLogDestinationResponse
	GetLogDestinationsRequest    = apiv1.GetLogDestinationsRequest
	GetLogDestinationsResponse   = apiv1.GetLogDestinationsResponse
	DeleteLogDestinationRequest  = apiv1.DeleteLogDestinationRequest
	DeleteLogDestinationResponse = apiv1.DeleteLogDestinationResponse
	Token                        = apiv1.Token
	CreateTokenRequest           = apiv1.CreateTokenRequest
	CreateTokenResponse          = apiv1.CreateTokenResponse
	ListTokensRequest            = apiv1.ListTokensRequest
	ListTokensResponse           = apiv1.ListTokensResponse
	RevokeTokenRequest           = apiv1.RevokeTokenRequest
	RevokeTokenResponse          = apiv1.RevokeTokenResponse
	AuditEntry                   = apiv1.AuditEntry
	ListAuditRequest             = apiv1.ListAuditRequest
	ListAuditResponse            = apiv1.ListAuditResponse
	Resources                    = apiv1.Resources
	LabelValues                  = apiv1.LabelValues
	Cluster                      = apiv1.Cluster
	ClusterStatus                = apiv1.ClusterStatus
	ListClustersRequest          = apiv1.ListClustersRequest
	ListClustersResponse         = apiv1.ListClustersResponse
	PutClusterRequest            = apiv1.PutClusterRequest
	PutClusterResponse           = apiv1.PutClusterResponse
	SetClusterStateRequest       = apiv1.SetClusterStateRequest
	SetClusterStateResponse      = apiv1.SetClusterStateResponse
	DeleteClusterRequest         = apiv1.DeleteClusterRequest
	DeleteClusterResponse        = apiv1.DeleteClusterResponse
	Quota                        = apiv1.Quota
	ResourceUse                  = apiv1.ResourceUse
	ClusterUse                   = apiv1.ClusterUse
	TeamQuota                    = apiv1.TeamQuota
	GetQuotasRequest             = apiv1.GetQuotasRequest
	GetQuotasResponse            = apiv1.GetQuotasResponse
	SetQuotaRequest              = apiv1.SetQuotaRequest
	SetQuotaResponse             = apiv1.SetQuotaResponse
	DeleteQuotaRequest           = apiv1.DeleteQuotaRequest
	DeleteQuotaResponse          = apiv1.DeleteQuotaResponse
	GetCostRequest               = apiv1.GetCostRequest
	TeamCost                     = apiv1.TeamCost
	JobCost                      = apiv1.JobCost
	GetCostResponse              = apiv1.GetCostResponse
)

// The enums' values.
const (
	TaskSort_TASK_SORT_UNSPECIFIED   = apiv1.TaskSort_TASK_SORT_UNSPECIFIED
	TaskSort_TASK_SORT_DURATION      = apiv1.TaskSort_TASK_SORT_DURATION
	TaskSort_TASK_SORT_PEAK_MEMORY   = apiv1.TaskSort_TASK_SORT_PEAK_MEMORY
	LogStream_LOG_STREAM_UNSPECIFIED = apiv1.LogStream_LOG_STREAM_UNSPECIFIED
	LogStream_LOG_STREAM_STDOUT      = apiv1.LogStream_LOG_STREAM_STDOUT
	LogStream_LOG_STREAM_STDERR      = apiv1.LogStream_LOG_STREAM_STDERR
)
