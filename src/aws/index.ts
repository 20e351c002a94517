/** AWS: S3 storage and transfers, SageMaker jobs and endpoints, the training container. */
export {
  type AwsCredentials,
  type AwsOptions,
  configureAws,
  s3Client,
  sageMakerClient,
  sageMakerRuntimeClient,
} from "./clients";
export { AwsError, isAwsError, scrubSecrets } from "./errors";
export {
  HYPERPARAMETERS,
  type HyperparameterOptions,
  hyperparameterTable,
  normaliseHyperparameters,
  parseHyperparameters,
} from "./hyperparameters";
export {
  DEFAULT_PART_SIZE,
  deleteKeys,
  downloadFile,
  downloadPrefix,
  isS3Uri,
  listObjects,
  objectSize,
  openS3Read,
  parseS3Uri,
  type S3Location,
  type S3Object,
  type S3TransferEvent,
  type S3TransferOptions,
  s3Uri,
  type UploadOptions,
  uploadDir,
  uploadFile,
} from "./s3";
export { onS3Transfer, s3Store } from "./s3-store";
export {
  type CreatedJob,
  checkName,
  createTrainingJob,
  createTransformJob,
  describeTrainingJob,
  describeTransformJob,
  embeddingEnvironment,
  type StatusUpdate,
  type TrainingJobSpec,
  type TransformJobSpec,
  trainingJobRequest,
  transformJobRequest,
  uniqueName,
  type WaitOptions,
  waitForTrainingJob,
  waitForTransformJob,
} from "./sagemaker";
export {
  type ArtifactOptions,
  createModel,
  type DeleteResult,
  type DeployResult,
  type DeploySpec,
  deleteEndpoint,
  deploy,
  describeEndpoint,
  findEndpoint,
  type InvokeOptions,
  type InvokeResult,
  invokeEndpoint,
  type ModelSpec,
  modelArtifact,
  predictOnEndpoint,
  waitForEndpoint,
} from "./sagemaker-endpoint";
export { fineTuneStaged, type StagedFineTuneOptions } from "./staged";
export { type PackResult, packDirectory } from "./tar";
export {
  type ContainerJob,
  type ContainerRunOptions,
  type ContainerRunResult,
  isTrainingContainer,
  readContainerJob,
  runTrainingContainer,
  SAGEMAKER_ROOT_ENV,
  type SageMakerPaths,
  sageMakerPaths,
  sageMakerRoot,
} from "./training-contract";
