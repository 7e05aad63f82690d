apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ .Release.Name }}-scheduler
  labels:
    app.kubernetes.io/name: hami
    app.kubernetes.io/instance: {{ .Release.Name }}
    app.kubernetes.io/component: hami-scheduler
spec:
  replicas: 1
  selector:
    matchLabels:
      app.kubernetes.io/instance: {{ .Release.Name }}
      app.kubernetes.io/component: hami-scheduler
  template:
    metadata:
      labels:
        app.kubernetes.io/name: hami
        app.kubernetes.io/instance: {{ .Release.Name }}
        app.kubernetes.io/component: hami-scheduler
    spec:
      containers:
      - name: kube-scheduler
        image: "{{ .Values.scheduler.kubeScheduler.image.registry }}/{{ .Values.scheduler.kubeScheduler.image.repository }}:{{ .Values.scheduler.kubeScheduler.image.tag | default (printf "v%s" (regexFind "[0-9]+[.][0-9]+[.][0-9]+" .Capabilities.KubeVersion.Version)) }}"
        args: ["--scheduler-name=hami-scheduler"]
      - name: vgpu-scheduler-extender
        image: "{{ .Values.scheduler.extender.image.registry }}/{{ .Values.scheduler.extender.image.repository }}:{{ .Values.global.imageTag }}"
        env:
        - name: HAMI_RESOURCE_NAME
          value: {{ .Values.resourceName | quote }}
        - name: HAMI_RESOURCE_MEM
          value: {{ .Values.resourceMem | quote }}
        - name: HAMI_RESOURCE_CORES
          value: {{ .Values.resourceCores | quote }}
        - name: HAMI_NODE_POLICY
          value: {{ .Values.scheduler.defaultSchedulerPolicy.nodeSchedulerPolicy | quote }}
        - name: HAMI_GPU_POLICY
          value: {{ .Values.scheduler.defaultSchedulerPolicy.gpuSchedulerPolicy | quote }}
